"""A converted bundle is a publishable model repository: its README.md model card,
written at conversion from what bundle.json records (sources with sha256,
dtypes and quantization) and how to use it, locally or by repo id once uploaded."""

from __future__ import annotations

from pathlib import Path

from funasr_qwen4b import __version__
from funasr_qwen4b.atomic import write_atomic
from funasr_qwen4b.bundle import COMPONENTS, Bundle
from funasr_qwen4b.hub import repo_of

CARD = "README.md"
WHAT = {"sensevoice": "SenseVoiceSmall encoder + CTC head", "adaptor": "audio adaptor",
        "llm": "Qwen3 (mlx-lm directory)"}
NANO_WHAT = {**WHAT, "sensevoice": "SenseVoiceSmall encoder (no query rows, no CTC head)",
             "adaptor": "audio adaptor (FunASR's Transformer)"}


def _precision(bundle: Bundle, name: str) -> str:
    c = bundle.components[name]
    if name == "llm" and c.q_bits:
        emb = "; embeddings 8-bit" if c.entry.get("embeddings_8bit") else ""
        return f"{c.q_bits}-bit, group size 64{emb}"
    if name == "adaptor" and c.q_bits:
        q = bundle.adaptor_quantization or {}
        return f"linear layers {c.q_bits}-bit, group size {q.get('group_size', 64)}; the rest {c.dtype}"
    return c.dtype


def _origin(file_name: str, path: str) -> str:
    """Where a source came from: its hub id (and revision) when it was in a hub cache, else its file name."""
    repo = repo_of(path)
    if repo is None:
        return f"`{file_name}`"
    rev = f"@{repo['revision'][:12]}" if repo["revision"] else ""
    return f"{repo['hub']}: `{repo['id']}{rev}` / `{file_name}`"


def _source_path(bundle: Bundle, name: str, file_name: str) -> str:
    # The LLM's directory is recorded as given (a snapshot, with its revision); files as resolved.
    c = bundle.components[name]
    return str(Path(c.entry["source_dir"]) / file_name) if "source_dir" in c.entry else c.sources[file_name]["path"]


def _base_models(bundle: Bundle) -> list[str]:
    """Hugging Face ids of the originals (the card's `base_model`, which links them on the Hub)."""
    ids = []
    for n, c in bundle.components.items():
        for f in c.sources:
            repo = repo_of(_source_path(bundle, n, f))
            if repo and repo["hub"] == "huggingface" and repo["id"] not in ids:
                ids.append(repo["id"])
    return ids


def card_text(bundle: Bundle, name: str) -> str:
    """The model card of `bundle`, published as `name` (a repo id, or the directory's name)."""
    front = ["---", "library_name: mlx", "pipeline_tag: automatic-speech-recognition",
             "tags: [mlx, funasr, sensevoice, qwen3, speech-recognition]"]
    base = _base_models(bundle)
    if base:
        front += ["base_model:", *(f"- {b}" for b in base)]
    front.append("---")
    nano = bundle.kind == "funasr-nano"
    what = NANO_WHAT if nano else WHAT
    rows = [f"| `{n}/` | {what[n]} | {_precision(bundle, n)} |" for n in COMPONENTS if n in bundle.components]
    sources = [f"| {n} | {_origin(f, _source_path(bundle, n, f))} | {s['bytes']:,} | `{s['sha256']}` |"
               for n in COMPONENTS if n in bundle.components
               for f, s in bundle.components[n].sources.items()]
    q = bundle.query
    use_llm = bundle.has("sensevoice", "adaptor", "llm")
    cli = f"funasr-qwen4b transcribe audio.wav -m {name}" + ("" if use_llm else " --ctc")
    return "\n".join([
        *front, "",
        f"# {name}", "",
        ("Fun-ASR-Nano (SenseVoiceSmall's encoder → audio adaptor → Qwen3)" if nano else
         "SenseVoiceSmall → audio adaptor → Qwen3") + " speech recognition, converted for Apple MLX by "
        f"funasr-qwen4b-mlx {__version__}. "
        "The converted weights compute what the original PyTorch modules compute; "
        "`funasr-qwen4b parity` checks it tap by tap against the originals below.", "",
        "## Components", "",
        "| directory | what | precision |", "| --- | --- | --- |", *rows, "",
        f"Model kind: `{bundle.kind}`. "
        f"Encoder query rows: {'language ' + q.language + ', ' + q.textnorm if q.enabled else 'none'}; "
        f"prompt template: `{bundle.default_template}`.", "",
        "## Converted from", "",
        "| component | source | bytes | sha256 |", "| --- | --- | --- | --- |", *sources, "",
        "The reference backend (`--backend reference`, `funasr-qwen4b parity`) reads these originals and "
        "refuses any file whose sha256 differs.", "",
        "## Use", "",
        "funasr-qwen4b-mlx is installed from a checkout of its repository (it is on no package registry):", "",
        "```", "pip install -e '.[mlx]'          # in the checkout", cli,
        f"funasr-qwen4b transcribe audio.wav -m {name} --output-format srt --output-dir subs/", "```", "",
        "```python", "from funasr_qwen4b import Transcriber",
        f"t = Transcriber.load({name!r}{'' if use_llm else ', ctc_only=True'})",
        't.transcribe("audio.wav", language="en")["text"]', "```", "",
        f"`{name}` is this directory; once uploaded, its repo id (`you/{name}`) works the same. A hub id is read "
        "from the local cache when it is there (no network); `HF_HUB_OFFLINE=1` never downloads.",
        ""])


def write_card(bundle: str | Path, name: str | None = None) -> Path:
    """Write BUNDLE/README.md (atomically) from the bundle as converted."""
    b = Bundle.read(bundle)
    path = b.root / CARD
    text = card_text(b, name or b.root.name)
    write_atomic(path, lambda p: Path(p).write_text(text, encoding="utf-8"))
    return path
