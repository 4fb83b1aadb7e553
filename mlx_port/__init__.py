"""The MLX path: loads the converted bundle; imports no torch."""
