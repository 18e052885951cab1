"""featcomp: calibrated feature-map compression for ONNX models."""
