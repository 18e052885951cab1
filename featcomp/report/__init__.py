"""featcomp/report"""
