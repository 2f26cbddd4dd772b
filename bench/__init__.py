"""Benchmarks of the MLX VideoPrism port (not tests): ``python -m bench [--quick]``."""
