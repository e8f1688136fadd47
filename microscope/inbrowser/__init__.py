"""The network exported for the browser: the "Try an image" page runs it with onnxruntime-web.

`export.py` turns a loaded `Network` into ONNX (the normalised image in; each chosen layer and the logits out),
`half.py` stores its weights in float16 where the outputs stay within a tolerance, `stored.py` reads the record
back without torch. The view that plans and runs it is microscope/views/inbrowser.py.
"""
