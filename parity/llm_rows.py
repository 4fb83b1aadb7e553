"""LLM-stage parity on stored audio rows: the reference Qwen3 (transformers,
float32) and the MLX one (mlx-lm) decode from the same adaptor outputs.

For a real-width LLM where the encoder and adaptor need not come along (a GPU
machine without FunASR), in three steps:

    python -m funasr_qwen4b.parity.llm_rows dump -m BUNDLE --manifest a.jsonl [--manifest b.jsonl] -o rows.npz
    python -m funasr_qwen4b.parity.llm_rows make-llm -o WORK --layers 2          # real-width Qwen3, converted fp32/8/4-bit
    python -m funasr_qwen4b.parity.llm_rows compare --rows rows.npz --work WORK --json report.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from funasr_qwen4b import taps
from funasr_qwen4b.audio import SAMPLE_RATE
from funasr_qwen4b.decoding import DecodeConfig, decode_loop
from funasr_qwen4b.prompt import PRESETS
from funasr_qwen4b.wiring import LlmSetup

VARIANTS = {"fp32": {"dtype": "float32"}, "8bit": {"q_bits": 8}, "4bit": {"q_bits": 4, "embeddings_8bit": True}}


log = logging.getLogger(__name__)


def dump(bundle: str, manifests: list[str], out: str) -> None:
    """Adaptor outputs of every manifest utterance (and each half of the longer
    ones), from the MLX path."""
    from funasr_qwen4b.audio import load_audio
    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(bundle)
    rows = {}
    for manifest in manifests:
        for line in Path(manifest).read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            x = load_audio(Path(manifest).parent / item["audio"])
            pieces = {item["id"]: x}
            if x.size > 4 * SAMPLE_RATE:
                pieces.update({f"{item['id']}#a": x[: x.size // 2], f"{item['id']}#b": x[x.size // 2:]})
            for key, samples in pieces.items():
                if samples.size <= 30 * SAMPLE_RATE:
                    rows[key] = pipe.run(samples).audio_embeds
                    log.info(f"{key}: {rows[key].shape}")
    np.savez(out, **rows)


def make_llm(work: str, layers: int) -> None:
    from funasr_qwen4b.convert.llm import convert_llm
    from funasr_qwen4b.testing import QWEN3_REAL_WIDTH, make_qwen3_dir

    work = Path(work)
    hf = make_qwen3_dir(work / "hf", num_hidden_layers=layers, max_shard_size="2GB", **QWEN3_REAL_WIDTH)
    for name, opts in VARIANTS.items():
        convert_llm(hf, work / name, **opts)


def compare(rows_path: str, work: str, out: str | None, tokens: int, template: str) -> dict:
    import mlx.core as mx

    from funasr_qwen4b.mlx_port.llm import Qwen3 as MlxQwen3
    from funasr_qwen4b.mlx_port.taps import TapRecorder as MlxRec
    from funasr_qwen4b.reference.llm import Qwen3 as RefQwen3, load_tokenizer
    from funasr_qwen4b.reference.taps import TapRecorder as RefRec
    import torch

    work = Path(work)
    rows = dict(np.load(rows_path))
    cfg = DecodeConfig(loop_guard=False, min_tokens=tokens, max_tokens=tokens)
    setup = LlmSetup.build(load_tokenizer(work / "hf"), PRESETS[template], cfg)
    ref = RefQwen3.load(work / "hf")
    ref_ids, per = {}, {}
    t0 = time.perf_counter()
    for key, audio in rows.items():
        rec = RefRec()
        emb = ref.inputs_embeds(setup.prompt, torch.from_numpy(audio), rec)
        ref_ids[key] = decode_loop(ref.tokens(emb, cfg, tokens + 1, rec), cap=tokens, stop=setup.stop, cfg=cfg).ids
        per[key] = {"ref_logits": rec.outputs[taps.LLM_LOGITS]}
    log.info(f"reference: {len(rows)} utterances in {time.perf_counter() - t0:.1f} s")
    report = {"utterances": len(rows), "tokens_each": tokens, "template": template, "variants": {}}
    fp32_ids = None
    for name in VARIANTS:
        mx.reset_peak_memory()
        llm = MlxQwen3.load(work / name / "llm")
        mx.eval(llm.model.parameters())
        weights = mx.get_active_memory()
        ids, rel, top1 = {}, [], []
        t0 = time.perf_counter()
        for key, audio in rows.items():
            rec = MlxRec()
            emb = llm.inputs_embeds(setup.prompt, mx.array(audio))
            ids[key] = decode_loop(llm.tokens(emb, cfg, tokens + 1, rec), cap=tokens, stop=setup.stop, cfg=cfg).ids
            a, b = rec.outputs[taps.LLM_LOGITS].astype(np.float64), per[key]["ref_logits"].astype(np.float64)
            rel.append(float(np.linalg.norm(a - b) / np.linalg.norm(b)))
            top1.append(bool(a.argmax() == b.argmax()))
        fp32_ids = fp32_ids or ids
        v = {
            "ids_identical_to_reference": sum(ids[k] == ref_ids[k] for k in rows) / len(rows),
            "ids_identical_to_mlx_fp32": sum(ids[k] == fp32_ids[k] for k in rows) / len(rows),
            "first_difference": {k: next((i for i, (x, y) in enumerate(zip(ids[k], ref_ids[k])) if x != y), None)
                                 for k in rows},
            "logits_rel_l2_max": max(rel), "logits_rel_l2_median": float(np.median(rel)),
            "logits_top1_agreement": sum(top1) / len(top1),
            "weights_gib": weights / 2**30, "peak_gib": mx.get_peak_memory() / 2**30,
            "seconds": time.perf_counter() - t0,
        }
        report["variants"][name] = v
        log.info(f"{name}: ids = reference on {v['ids_identical_to_reference']:.0%}, = fp32 on "
            f"{v['ids_identical_to_mlx_fp32']:.0%}; logits rel L2 max {v['logits_rel_l2_max']:.2e}; "
            f"LLM memory {v['weights_gib']:.2f} GiB (peak {v['peak_gib']:.2f})")
        del llm
        mx.clear_cache()
    if out:
        Path(out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m funasr_qwen4b.parity.llm_rows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="adaptor outputs of manifest utterances → rows.npz")
    d.add_argument("-m", "--model", required=True)
    d.add_argument("--manifest", action="append", required=True)
    d.add_argument("-o", "--output", required=True)
    m = sub.add_parser("make-llm", help="a real-width random Qwen3 (HF format) and its fp32/8-bit/4-bit conversions")
    m.add_argument("-o", "--output", required=True)
    m.add_argument("--layers", type=int, default=2)
    c = sub.add_parser("compare", help="decode every row in both paths and compare")
    c.add_argument("--rows", required=True)
    c.add_argument("--work", required=True)
    c.add_argument("--json")
    c.add_argument("--tokens", type=int, default=30)
    c.add_argument("--template", choices=sorted(PRESETS), default="raw")
    a = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    if a.cmd == "dump":
        dump(a.model, a.manifest, a.output)
    elif a.cmd == "make-llm":
        make_llm(a.output, a.layers)
    else:
        print(json.dumps(compare(a.rows, a.work, a.json, a.tokens, a.template), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
