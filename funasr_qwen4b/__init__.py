"""Shared, torch-free and MLX-free pieces of funasr-qwen4b-mlx: configs, audio,
tap names, CTC decoding, bundle files and the command line."""

__version__ = "0.1.0"
