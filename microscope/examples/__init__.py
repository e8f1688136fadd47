"""Dataset examples: for every channel, the images (and receptive-field patches) that excite it most.

One streaming pass over a folder of images updates, for all chosen layers at once, each channel's
accumulators (`accumulator.py` and the modules it composes: top k, bands, histogram); passes over
parts of a dataset merge exactly. Then `patches.py` cuts receptive-field crops from the top images
into packs (`packs.py`). The view that plans and stores all this is microscope/views/examples.py.
"""
