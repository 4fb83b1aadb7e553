"""funasr-qwen4b-mlx: SenseVoiceSmall → audio adaptor → Qwen3-4B on Apple MLX,
with a PyTorch reference and a layer-by-layer parity harness.

The modules here are the floor: torch-free, MLX-free contracts both paths share
(configs, bundle, audio, taps, prompts, decoding rules, CTC text, text
normalisation, manifests). The application lives in `funasr_qwen4b.app`;
`from funasr_qwen4b import Transcriber` reaches it lazily, so importing the floor
never loads it.
"""

__version__ = "0.1.0"
__all__ = ["Transcriber", "__version__"]


def __getattr__(name: str):
    if name == "Transcriber":
        from .app.transcriber import Transcriber

        return Transcriber
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
