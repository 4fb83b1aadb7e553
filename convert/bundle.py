"""`convert bundle`: every component at once, into a bundle that appears whole
or not at all."""

from __future__ import annotations

from pathlib import Path

from funasr_qwen4b.atomic import staging, swap_in
from funasr_qwen4b.bundle import BUNDLE_JSON, check_fit
from funasr_qwen4b.config import QueryConfig

from .adaptor import convert_adaptor
from .card import write_card
from .llm import check_hf_dir, convert_llm
from .sensevoice import convert_sensevoice


def check_replaceable(out: Path, force: bool) -> None:
    """A whole bundle goes to `out`: refused over anything but a bundle, and over one without --force."""
    if out.exists():
        if not force:
            raise ValueError(f"{out} already exists; pass --force to replace it")
        if not (out / BUNDLE_JSON).is_file():
            raise ValueError(f"{out} exists and is not a bundle; refusing to replace it, choose another -o")


def convert_bundle(out: str | Path, *, sensevoice: str | Path, adaptor: str | Path | None = None,
                   llm: str | Path | None = None, dtype: str | None = None, query: QueryConfig = QueryConfig(),
                   adaptor_options: dict | None = None, llm_options: dict | None = None,
                   force: bool = False) -> Path:
    """`dtype` None: float32 for SenseVoice and the adaptor, bfloat16 for the LLM."""
    out = Path(out)
    check_replaceable(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging(out.parent, out.name) as work:
        stage = work / "bundle"
        convert_sensevoice(sensevoice, stage, dtype=dtype or "float32", query=query)
        if adaptor is not None:
            convert_adaptor(adaptor, stage, dtype=dtype or "float32", **(adaptor_options or {}))
        if llm is not None:
            check_hf_dir(Path(llm))
            if adaptor is not None:  # before the long LLM conversion: its width must fit the adaptor's
                check_fit({"adaptor": stage / "adaptor", "llm": Path(llm)}, f"--adaptor {adaptor} with --llm {llm}")
            convert_llm(llm, stage, dtype=dtype or "bfloat16", **(llm_options or {}))
        write_card(stage, out.name)
        swap_in(stage, out, work / "old")
    return out
