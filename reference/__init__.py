"""The PyTorch reference path: FunASR's own modules, loaded from the original files."""
