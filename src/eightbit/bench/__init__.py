"""Benchmarks: FP32 and INT8 side by side in one run; JSON and Markdown out."""
