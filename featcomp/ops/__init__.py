"""The ops featcomp adds to a model, defined once: names and schemas (schemas.py) and their bodies of
standard ONNX ops (functions.py for the codec pairs, jpeg.py for the learned-JPEG input).

ONNX only, no runtime: passes build these ops into models and the runtime adapters
(featcomp.runtime_ops: ONNX Runtime, TVM) run them, so both import this package and it imports neither.
"""
