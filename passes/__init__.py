"""Graph edits on ONNX models. Every pass returns a PassResult (passes/edit.py): the new model, whether it
changed, and notes naming what changed."""
