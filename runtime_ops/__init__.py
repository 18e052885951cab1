"""runtime_ops"""
