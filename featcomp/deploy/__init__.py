"""Deployable bundles: `featcomp compile` (compile.py, through the TVM adapter in runtime_ops/tvm)
and `featcomp run` (bundle.py: runs the native runner here or under qemu, no TVM import needed).
See docs/tvm.md."""
