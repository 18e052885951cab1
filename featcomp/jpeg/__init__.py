"""Learned JPEG at the model input: tables for a network, ordinary JPEG files, and an exact ONNX node.

tables (table model, JSON, libjpeg quality scaling) -> dct (libjpeg's integer pipeline in numpy, the
reference) -> encode (Pillow files, real bytes) -> measure / learn (deepn, learned) -> evaluate
(curves, BD-rate, input bytes) -> plot; cli is `featcomp jpeg`. The node itself is
featcomp.ops.jpeg (op and body) and featcomp.passes.jpeg_input (insert / strip).
See docs/jpeg.md.
"""
