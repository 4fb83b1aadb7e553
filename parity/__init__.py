"""Layer-by-layer comparison of the MLX port against the reference, and reports."""
