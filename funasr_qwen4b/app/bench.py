"""`bench`: speed and memory per stage, for a bundle or for real-size random
weights (`--synthetic full`: the qwen4b model; `--synthetic nano`: Fun-ASR-Nano, built
as a bundle by bench_nano), MLX and/or the PyTorch reference.

Timings are wall clock after warm-up, synchronised at stage ends (mx.eval /
host copies), medians and spread over repetitions; every A-against-B decode figure
(speculation against plain, the pipeline against bare mlx-lm, Fun-ASR-Nano's stages against
the peers funasr-mlx's and mlx-audio's: bench_nano_peer) is timed in interleaved blocks (bench_blocks), `reps` of them. Decoding always runs to
the token cap (EOS ignored) so tokens/s compare like with like. Memory is
measured: MLX active/peak memory; for PyTorch the process RSS (and CUDA peak
when on a GPU).
"""

from __future__ import annotations

import contextlib
import logging

from ..bundle import as_bundle
from ..config import Backend
from .backends import load_pipeline
from .bench_mlx import (MEASURED_DRAFT_RATE, encoder_vs_peer, mlx_decode_vs_bare, mlx_synthetic, projection,
                        speculation_vs_plain)
from .bench_nano import nano_synthetic
from .bench_nano_peer import nano_vs_peer, require_peer
from .bench_nano_peer import to_markdown as nano_peer_markdown
from .bench_reference import reference_bench
from .bench_stages import CLIPS, STAGES, bench_decode, clip, machine, run_stages

log = logging.getLogger(__name__)


SYNTHETIC = ("full", "nano")  # real-size random weights: the qwen4b model, Fun-ASR-Nano


def run_bench(*, bundle=None, synthetic: str | None, backends: tuple[Backend, ...], clips=CLIPS,
              reps: int = 5, warmup: int = 2, tokens: int = 64, q_bits: int | None = None,
              dtype: str = "float16", adaptor_q_bits: int | None = None, draft_rate: float | None = None,
              peer: bool = False) -> dict:
    """`bundle`: a Bundle (or path); `synthetic`: one of SYNTHETIC for real-size random weights
    instead ("nano": converted at `dtype`, every component). `draft_rate`: speculation with a
    simulated draft (default for `full`, whose CTC transcript is noise: MEASURED_DRAFT_RATE); None
    with a bundle: the clip's CTC transcript, and no speculation where the model has no CTC head."""
    if synthetic is not None and synthetic not in SYNTHETIC:
        raise ValueError(f"unknown synthetic model {synthetic!r}; use one of {', '.join(SYNTHETIC)}")
    if synthetic == "nano" and adaptor_q_bits:
        raise ValueError("--adaptor-q-bits quantizes the qwen4b adaptor; Fun-ASR-Nano's is converted unquantized")
    if peer:
        require_peer()
    with nano_synthetic(dtype, q_bits) if synthetic == "nano" else contextlib.nullcontext(bundle) as built:
        bundle = as_bundle(built) if built is not None else None
        in_memory = synthetic == "full"  # MLX modules built here; otherwise a bundle (nano's built one included)
        report = {"machine": machine(), "settings": {"reps": reps, "warmup": warmup, "tokens": tokens,
                                                      "clips_s": list(clips), "q_bits": q_bits,
                                                      "adaptor_q_bits": adaptor_q_bits,
                                                      "encoder_adaptor_dtype": dtype if in_memory else "bundle",
                                                      "source": f"synthetic {synthetic}" if synthetic else str(bundle.root)},
                  "results": {}}
        if bundle is not None:
            report["settings"]["kind"] = bundle.kind
            report["settings"]["component_dtypes"] = bundle.precisions
        samples = {s: clip(s) for s in clips}
        if Backend.MLX in backends:
            report["results"]["mlx"] = mlx_bench(bundle, in_memory, samples, reps, warmup, tokens, q_bits, dtype,
                                                 adaptor_q_bits, draft_rate)
        near_10 = min(clips, key=lambda k: abs(k - 10))
        if peer and synthetic == "nano":
            report["nano_vs_peer"] = nano_vs_peer(bundle, samples[near_10], tokens=tokens, blocks=reps, warmup=warmup,
                                                  dtype=dtype, q_bits=q_bits)
        elif peer:
            report["encoder_vs_peer"] = encoder_vs_peer(near_10, ("float16", "float32"), reps, warmup)
        if Backend.REFERENCE in backends:
            report["results"]["reference"] = reference_bench(bundle, in_memory, samples, reps, warmup, tokens)
            report["mlx_over_pytorch_speed"] = stage_ratios(report)
        return report


def mlx_bench(bundle, in_memory: bool, samples: dict, reps: int, warmup: int, tokens: int, q_bits: int | None,
              dtype: str, adaptor_q_bits: int | None, draft_rate: float | None) -> dict:
    """The MLX stage table of the bundle, or of `--synthetic full`'s models built in memory, with
    decoding against bare mlx-lm and speculation against plain decoding."""
    import mlx.core as mx

    if in_memory:
        pipe, mem = mlx_synthetic(q_bits, dtype, tokens, adaptor_q_bits)
        draft_rate = MEASURED_DRAFT_RATE if draft_rate is None else draft_rate
    else:
        mx.reset_peak_memory()
        pipe = load_pipeline(bundle, Backend.MLX, decode=bench_decode(tokens))
        mem = {"all_weights": mx.get_active_memory()}
    r = {"weights_bytes": mem, "clips": {}}
    for s, x in samples.items():
        log.info(f"MLX: {s:.0f} s clip ...")
        r["clips"][f"{s:.0f}s"] = run_stages(pipe, x, reps, warmup, mx.get_peak_memory, mx.reset_peak_memory)
    if pipe.llm is None:
        return r
    near_10 = min(samples, key=lambda k: abs(k - 10))
    c = r["clips"][f"{near_10:.0f}s"]
    r["decode_vs_bare_mlx_lm"] = mlx_decode_vs_bare(pipe, samples[near_10], tokens, reps, warmup)
    if draft_rate is None and pipe.sensevoice.cfg.vocab_size is None:
        r["speculation"] = {"draft": None, "note": "no CTC head: nothing to draft from (--draft-rate simulates one)"}
    else:
        spec = speculation_vs_plain(pipe, samples[near_10], tokens, reps, draft_rate, warmup,
                                    table_plain_tok_s=c.get("decode_tok_s"))
        decode = c["stages_s"]["llm_decode"]["median"]
        if decode:  # the stage table's run with its decode at speculation's median speed
            spec["rtf_with_speculation"] = (c["total_s"]["median"] - decode
                                            + (c["generated_tokens"] - 1) / spec["speculative_tok_s"]) / c["audio_s"]
        r["speculation"] = spec
    llm_bytes = mem.get("llm") or mem.get("all_weights")
    r["apple_projection"] = {"note": "projection, not a measurement: weight bytes per token vs bandwidth",
                             "llm_weight_bytes": llm_bytes, **projection(llm_bytes)}
    return r


def stage_ratios(report: dict) -> dict:
    """MLX speed / PyTorch speed per stage and clip (> 1: MLX faster)."""
    res = report["results"]
    if not {"mlx", "reference"} <= set(res):
        return {}
    out = {}
    for clip_name, m in res["mlx"]["clips"].items():
        r = res["reference"]["clips"].get(clip_name)
        if r is None:
            continue
        out[clip_name] = {s: (r["stages_s"][s]["median"] / m["stages_s"][s]["median"])
                          if r["stages_s"][s]["median"] and m["stages_s"][s]["median"] else None for s in STAGES}
    return out


def spread_text(s: dict) -> str:
    return f"blocks {s['min']:.2f}-{s['max']:.2f}, IQR {s['iqr'][0]:.2f}-{s['iqr'][1]:.2f}"


def to_markdown(report: dict) -> str:
    m, st = report["machine"], report["settings"]
    lines = [f"# bench: {st['source']}", "",
             f"- machine: {m}", f"- settings: {st}", "",
             "| backend | clip | " + " | ".join(STAGES) + " | total | RTF | prefill tok/s | decode tok/s | peak GiB |",
             "|---|---|" + "---|" * (len(STAGES) + 5)]
    for backend, r in report["results"].items():
        for name, c in r["clips"].items():
            cells = [f"{c['stages_s'][s]['median'] * 1000:.1f} ms" if c['stages_s'][s]['median'] is not None
                     else "-" for s in STAGES]
            lines.append(f"| {backend} | {name} | " + " | ".join(cells) +
                         f" | {c['total_s']['median'] * 1000:.0f} ms | {c['rtf']:.4f} | "
                         f"{c.get('prefill_tok_s', 0):.0f} | {c.get('decode_tok_s', 0):.1f} | "
                         f"{c.get('peak_gib', float('nan')):.2f} |")
        if "decode_vs_bare_mlx_lm" in r:
            d = r["decode_vs_bare_mlx_lm"]
            lines.append(f"\n{backend} decode, {d['blocks']['n']} interleaved blocks: pipeline {d['pipeline_tok_s']:.1f} "
                         f"tok/s, bare mlx-lm generate_step {d['bare_mlx_lm_tok_s']:.1f} tok/s; pipeline / bare = "
                         f"{d['ratio']:.3f} ({spread_text(d['ratio_over_blocks'])})")
        if r.get("speculation", {}).get("draft", "") is None:
            lines.append(f"{backend} speculation: n/a ({r['speculation']['note']})")
        elif "speculation" in r:
            sp = r["speculation"]
            what = f"simulated draft at rate {sp['draft_rate']:g}" if sp["draft"] == "simulated" else "CTC draft"
            v = sp["verify_vs_single"]
            lines.append(f"{backend} speculation ({what}), {sp['blocks']['n']} interleaved blocks: "
                         f"{sp['speculative_tok_s']:.1f} tok/s = {sp['decode_speedup']:.2f}x the best plain "
                         f"{sp['best_plain_tok_s']:.1f} tok/s of the run; over each block's plain "
                         f"{sp['ratio_over_blocks']['median']:.2f}x ({spread_text(sp['ratio_over_blocks'])}); "
                         f"{sp['tokens_per_pass']:.2f} tokens per pass, ids identical: {sp['ids_identical']}"
                         + (f" (first difference at {sp['first_difference']})" if sp["first_difference"] is not None
                            else "")
                         + (f"; draft re-aligned {sp['draft_realigned']} times" if "draft_realigned" in sp else "")
                         + f"; a {v['pass_positions']}-position pass and one-position passes disagree at "
                         f"{v['differ']} of {v['positions']} positions"
                         + (f"; RTF with speculation {sp['rtf_with_speculation']:.4f}" if "rtf_with_speculation" in sp
                            else ""))
            if "warning" in sp:
                lines.append(f"WARNING: {sp['warning']}")
        for name, c in r["clips"].items():
            if "peak_after_stage_gib" in c:
                lines.append(f"{backend} {name} peak after each stage: " + ", ".join(
                    f"{k} {v:.2f} GiB" for k, v in c["peak_after_stage_gib"].items()))
        if "weights_bytes" in r:
            lines.append(f"{backend} weights: " + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in r['weights_bytes'].items()))
        if "apple_projection" in r:
            p = r["apple_projection"]
            lines.append("Apple Silicon decode ceiling (projection): " + ", ".join(
                f"{k} {v['ceiling_tok_s']} tok/s" for k, v in p.items() if isinstance(v, dict)))
    for dtype, e in report.get("encoder_vs_peer", {}).items():
        if isinstance(e, dict):
            m = e["median_ms"]
            lines.append(f"encoder {dtype}, {report['encoder_vs_peer']['seconds']:g} s: ours {m['ours']:.2f} ms, "
                         f"ours compiled {m['ours_compiled']:.2f} ms, funasr-mlx {m['peer']:.2f} ms; "
                         f"ours / peer speed {e['ours_speed_over_peer']:.2f}x")
    if "nano_vs_peer" in report:
        lines.extend(nano_peer_markdown(report["nano_vs_peer"]))
    for clip_name, ratios in report.get("mlx_over_pytorch_speed", {}).items():
        lines.append(f"MLX / PyTorch speed, {clip_name}: " + ", ".join(
            f"{s} {v:.2f}" for s, v in ratios.items() if v is not None))
    return "\n".join(lines) + "\n"
