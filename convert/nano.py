"""`convert bundle --funasr-nano`: a Fun-ASR-Nano directory → a bundle of kind `funasr-nano`.

FunASR's layout (config.yaml + model.pt + the Qwen3 folder llm_conf names) is read here;
transformers' `-hf` layout is first written in FunASR's layout inside the staging area
(convert/nano_hf.py maps its names) and then read the same way. The three parts of model.pt
become the three components, through the existing writers:
`audio_encoder.*` the `sensevoice` component (SenseVoiceSmall's names and layouts, no query
table, no CTC head), `audio_adaptor.*` the `adaptor` component (FunASR's names, unchanged) and
`llm.*`, with the Qwen3 folder's config and tokenizer, a Hugging Face directory in the staging
area that mlx-lm converts. Every component records the original files it came from, by their
path in the source directory (for an -hf source, every file of it), so the reference backend
finds and checks them. The bundle appears whole or not at all.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import save_file

from funasr_qwen4b.atomic import staging, swap_in, write_json_atomic
from funasr_qwen4b.bundle import BUNDLE_JSON, NANO_ADAPTOR_LAYOUT
from funasr_qwen4b.files import read_json
from funasr_qwen4b.hub import resolve
from funasr_qwen4b.nano_keys import ADAPTOR, ENCODER, LLM
from funasr_qwen4b.nano_sources import TRANSFORMERS, NanoSource, detect_layout, llm_files
from funasr_qwen4b.prompt import NANO_TEMPLATE, nano_template
from funasr_qwen4b.reference.funasr_nano import load_nano_state

from .bundle import check_replaceable
from .card import write_card
from .llm import convert_llm
from .sensevoice import DTYPES, check_dtype_range, cmvn_weights, mlx_layout
from .writing import source_entry, write_component, write_component_config

log = logging.getLogger(__name__)

KIND = "funasr-nano"


def convert_nano(src: str | Path, out: str | Path, *, dtype: str | None = None, q_bits: int | None = None,
                 force: bool = False, hub: str | None = None, revision: str | None = None) -> Path:
    """`src`: a Fun-ASR-Nano directory or hub id. `dtype` None: float32 for the encoder and the
    adaptor, bfloat16 for the LLM; `q_bits` quantizes the LLM."""
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    if q_bits not in (None, 4, 8):
        raise ValueError(f"-q must be 4 or 8, got {q_bits}")
    out = Path(out)
    check_replaceable(out, force)
    root = resolve(src, hub=hub, revision=revision, what="Fun-ASR-Nano model")
    layout = detect_layout(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging(out.parent, out.name) as work:
        if layout == TRANSFORMERS:
            from .nano_hf import write_original  # transformers' names mapped onto FunASR's

            log.info(f"{root} is transformers' layout (-hf); mapping it onto FunASR's")
            source = NanoSource.from_dir(write_original(root, work / "original"))
            originals = Originals.whole(root)
        else:
            source = NanoSource.from_dir(root)
            originals = Originals.funasr(source)
        _convert(source, originals, work, out, dtype=dtype, q_bits=q_bits)
    return out


def _convert(source: NanoSource, originals: "Originals", work: Path, out: Path, *, dtype: str | None,
             q_bits: int | None) -> None:
    log.info(f"reading {source.model_pt} (weights_only=True)")
    ckpt = load_nano_state(source)
    sv_cfg, ad_cfg, llm_config, sd = ckpt.encoder, ckpt.adaptor, ckpt.llm_config, ckpt.state
    if ckpt.has_ctc:
        log.info("model.pt holds FunASRNano's CTC branch; it is not converted (its tokenizer is not read), so "
                 "this bundle has no CTC transcript to draft from")
    e = sv_cfg.encoder
    log.info(f"Fun-ASR-Nano: encoder {e.num_blocks}+{e.tp_blocks} SAN-M layers, d={e.output_size}; adaptor "
             f"{ad_cfg.encoder_dim}×{ad_cfg.downsample_rate}→{ad_cfg.ffn_dim}→{ad_cfg.llm_dim}, {ad_cfg.n_layer} blocks"
             f"{', low frame rate' if ad_cfg.use_low_frame_rate else ''}; Qwen3 hidden {llm_config['hidden_size']}")
    stage = work / "bundle"
    _write_encoder(stage, source, originals, sv_cfg, sd, dtype or "float32")
    _write_adaptor(stage, source, originals, ad_cfg, sd, dtype or "float32")
    hf = _llm_hf_dir(work / "llm-hf", source, llm_config, sd)
    convert_llm(hf, stage, dtype=dtype or "bfloat16", q_bits=q_bits)
    _record_originals(stage, originals)
    write_card(stage, out.name)
    swap_in(stage, out, work / "old")


@dataclass
class Originals:
    """What each component records it was converted from: files by their path under `root`
    (absolute where outside it), each hashed once."""

    root: Path
    encoder: list[Path]
    adaptor: list[Path]
    llm: list[Path]
    _seen: dict[Path, dict] = field(default_factory=dict)

    @classmethod
    def funasr(cls, source: NanoSource) -> "Originals":
        common = [source.model_pt, source.config_yaml]
        return cls(source.root, [*common, *([source.cmvn_file] if source.cmvn_file else [])], common,
                   [*common, *llm_files(source.llm_dir)])

    @classmethod
    def whole(cls, root: Path) -> "Originals":
        """Every file of a directory, for each component (an -hf repository)."""
        files = sorted(p for p in root.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        return cls(root, files, files, files)

    def entry(self, dtype: str, files: list[Path], **extra) -> dict:
        sources = {}
        for p in files:
            try:
                rel = p.relative_to(self.root).as_posix()
            except ValueError:
                rel = str(p.absolute())
            if p not in self._seen:
                self._seen[p] = source_entry(p)
            sources[rel] = self._seen[p]
        return {"dtype": dtype, **extra, "sources": sources, "source_dir": str(self.root.absolute())}


def _write_encoder(stage: Path, source: NanoSource, originals: Originals, cfg, sd: dict, dtype: str) -> None:
    encoder = {"encoder." + k.removeprefix(ENCODER): v for k, v in sd.items() if k.startswith(ENCODER)}
    weights = mlx_layout(encoder, DTYPES[dtype])
    check_dtype_range(weights, dtype, source.model_pt)
    if source.cmvn_file is not None:
        weights.update(cmvn_weights(source.cmvn_file, cfg.encoder.input_size))
    entry = originals.entry(dtype, originals.encoder, query={"enabled": False})
    with write_component(stage, "sensevoice", entry, meta={"kind": KIND}) as out:
        save_file(weights, str(out / "model.safetensors"), metadata={"format": "mlx"})
        write_component_config(out, "sensevoice", cfg.to_dict(), dtype=dtype)


def _write_adaptor(stage: Path, source: NanoSource, originals: Originals, cfg, sd: dict, dtype: str) -> None:
    weights = {k.removeprefix(ADAPTOR): v.to(DTYPES[dtype]).contiguous()
               for k, v in sd.items() if k.startswith(ADAPTOR)}
    check_dtype_range(weights, dtype, source.model_pt)
    with write_component(stage, "adaptor", originals.entry(dtype, originals.adaptor)) as out:
        save_file(weights, str(out / "model.safetensors"), metadata={"format": "mlx"})
        write_json_atomic(out / "config.json", {"layout": NANO_ADAPTOR_LAYOUT, "config": cfg.to_dict(), "dtype": dtype})


def _llm_hf_dir(hf: Path, source: NanoSource, llm_config: dict, sd: dict) -> Path:
    """model.pt's `llm.*` as the Hugging Face Qwen3 directory mlx-lm converts: the Qwen3
    folder's config and tokenizer files beside the weights (a tied LM head written once)."""
    hf.mkdir()
    for p in llm_files(source.llm_dir):
        shutil.copyfile(p, hf / p.name)
    weights = {k.removeprefix(LLM): v.contiguous() for k, v in sd.items() if k.startswith(LLM)}
    if llm_config.get("tie_word_embeddings", False):
        weights.pop("lm_head.weight", None)
    save_file({k: v.clone() for k, v in weights.items()}, str(hf / "model.safetensors"), metadata={"format": "pt"})
    return hf


def _record_originals(stage: Path, originals: Originals) -> None:
    """The LLM component as converted from the originals (not the staging directory), and the
    Fun-ASR-Nano prompt as the bundle's default (FunASR's own call: no hotwords, no language, ITN)."""
    meta = read_json(stage / BUNDLE_JSON, "the bundle being written")
    meta["components"]["llm"].update(originals.entry(meta["components"]["llm"]["dtype"], originals.llm))
    presets = {**meta["prompt"]["presets"], NANO_TEMPLATE: nano_template()}
    meta["prompt"] = {"default": NANO_TEMPLATE, "presets": presets}
    write_json_atomic(stage / BUNDLE_JSON, meta)

