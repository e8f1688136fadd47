"""Dataset examples: for every channel, the images (and receptive-field patches) that excite it most.

One streaming pass over a folder of images updates, for all chosen layers at once, each channel's
accumulators (`accumulator.py` and the modules it composes: top k, bands, histogram); passes over
parts of a dataset merge exactly. Then `patches.py` cuts receptive-field crops from the top images
into packs (microscope/data/packs.py). `planning.py` plans the pass and its jobs, `steps.py` runs
them; `stored.py` reads the results back and `panel.py` shows them (the view's show half, no torch).
The view's compute half, with its settings, is microscope/views/examples.py.
"""
