"""Original files → the converted bundle (safetensors + config.json)."""
