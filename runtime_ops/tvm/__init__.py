"""The TVM adapter: the only package code that imports tvm (kernels, converters, schedules, build,
tune, rpc). This __init__ imports nothing, so `featcomp.runtime_ops.tvm` and its package data
(runner/runner.cc) are reachable without TVM installed. See docs/tvm.md."""
