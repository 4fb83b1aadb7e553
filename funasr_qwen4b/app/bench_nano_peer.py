"""`bench --synthetic nano --peer`: our Fun-ASR-Nano beside the peers funasr-mlx's and (where
installed) mlx-audio's (bench_nano_mlx_audio), on the same random weights, stage by stage, in one
run.

funasr-mlx loads only its own converted layout (safetensors + config.json), so the original
directory our bundle was converted from (FunASR's model.pt + config.yaml + the Qwen3 folder) is
converted by the peer's own converter (`convert_checkpoint`, its `fun-asr-nano` source rule) and
run by its own `LlmAsrTranscriber`. Its converter writes float16/float32 only from FunASR's
model.pt (the encoder's float32 tensors have no numpy bfloat16 to go to), and quantizes only
16-bit checkpoints: a bfloat16 side is converted at float32 and cast with the peer model's own
`set_dtype`; `-q` quantizes it in memory with its own `apply_quantization` (what its loader does
with a checkpoint's quantization section), the layers' linear weights and the tied embedding at
group size 64, as ours. Every side decodes the same number of tokens greedily, EOS ignored.

Each stage's speed is timed in interleaved blocks (bench_blocks), every side in each block: ours
over each peer's, the median over blocks of the sides' block medians, with its spread. Peak
memory is measured per side in its own untimed run, outside the blocks.
"""

from __future__ import annotations

import functools
import gc
import importlib.metadata
import json
import logging
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

from ..atomic import scratch
from ..audio import SAMPLE_RATE
from ..config import Backend
from . import bench_nano_mlx_audio
from .backends import load_pipeline
from .bench_blocks import ratio, run_blocks, spread
from .bench_stages import bench_decode

log = logging.getLogger(__name__)

# Each stage's speed, and its unit: encoder and adaptor runs per second (and the two together,
# whichever of them a lazily evaluated encoder's work is charged to), prefill positions per second,
# decode tokens per second after the first, whole clips in audio seconds per second (1/RTF).
SPEEDS = {"frontend": "runs/s", "encoder": "runs/s", "adaptor": "runs/s", "encoder+adaptor": "runs/s",
          "llm_prefill": "positions/s", "llm_decode": "tok/s", "whole_clip": "audio s/s (1/RTF)"}
# ours' convert_llm quantizes every Linear and the tied embedding at this group size
Q_GROUP = 64
PEER_CONVERT_DTYPES = ("float16", "float32")


def require_peer() -> None:
    """--peer's package, asked for before anything is built or timed."""
    try:
        import funasr_mlx  # noqa: F401
    except ImportError as e:
        raise ValueError(f"--peer needs the funasr-mlx package ({e}); pip install funasr-mlx") from None


def nano_vs_peer(bundle, samples: np.ndarray, *, tokens: int, blocks: int, warmup: int, dtype: str,
                 q_bits: int | None) -> dict:
    """Our pipeline of a Fun-ASR-Nano bundle against the peers (funasr-mlx, and mlx-audio where
    installed) on the original directory the bundle was converted from, at `dtype` (every
    component) and `q_bits` (the LLM), on one clip: per stage speeds in interleaved blocks, peak
    memory per side."""

    src = bundle.source("llm")  # the original directory, checked against what was converted
    with_mlx_audio = bench_nano_mlx_audio.installed()
    if not with_mlx_audio:
        log.info("--peer: mlx-audio is not installed, so funasr-mlx alone beside ours (pip install mlx-audio==0.6.2)")
    with scratch("funasr-qwen4b-bench-peer-") as work:
        builds = {"funasr-mlx": functools.partial(PeerNano, peer_checkpoint(src, work / "funasr-mlx", dtype), tokens,
                                                  dtype, q_bits)}
        if with_mlx_audio:
            ckpt = bench_nano_mlx_audio.convert_checkpoint(src, work / "mlx-audio", dtype)
            builds[bench_nano_mlx_audio.PACKAGE] = functools.partial(bench_nano_mlx_audio.MlxAudioNano, ckpt, tokens,
                                                                     dtype, q_bits, Q_GROUP)
        pipe, ours_weights = resident(lambda: ours_loaded(bundle, tokens))
        built = {name: resident(build) for name, build in builds.items()}
    peers = {name: side for name, (side, _) in built.items()}
    weights = {"ours": ours_weights, **{name: w for name, (_, w) in built.items()}}
    seconds = samples.size / SAMPLE_RATE
    sides = {"ours": lambda: ours_run(pipe, samples), **{name: functools.partial(p.run, samples)
                                                         for name, p in peers.items()}}
    memory = {name: peak_of(run, weights[name]) for name, run in sides.items()}
    runs = {name: [] for name in sides}

    def runner(name):
        def run() -> float:
            r = sides[name]()
            runs[name].append(r)
            return seconds / r["total"]
        return run

    rep = run_blocks({name: runner(name) for name in sides}, n=blocks, warmup=warmup)
    per_block = {name: [r[warmup + i * rep["k"]: warmup + (i + 1) * rep["k"]] for i in range(blocks)]
                 for name, r in runs.items()}
    last = {name: r[-1] for name, r in runs.items()}
    stages = {}
    for stage, unit in SPEEDS.items():
        speeds = {name: [statistics.median(stage_speed(r, stage, seconds) for r in block) for block in bs]
                  for name, bs in per_block.items()}
        stages[stage] = {"unit": unit, **{name: {**spread(v), "blocks": v} for name, v in speeds.items()},
                         "ours_over": {name: ratio({"speeds": speeds}, "ours", name) for name in peers}}
    # every run's count, so a side that stopped short anywhere shows
    return {"clip_s": seconds, "tokens": {name: sorted({r["tokens"] for r in rs}) for name, rs in runs.items()},
            "prefill_positions": {name: r["prefill_positions"] for name, r in last.items()},
            "audio_rows": {name: r["audio_rows"] for name, r in last.items()},
            "rtf": {name: seconds / stages["whole_clip"][name]["median"] for name in sides},
            "blocks": {"n": rep["n"], "k": rep["k"], "order": rep["order"], "warmup": warmup},
            "stages": stages, "memory": memory,
            "peers": {name: {"package": p.package, "dtype": dtype, "q_bits": q_bits, "loaded": p.how,
                             "differs": p.differs} for name, p in peers.items()}}


def resident(build):
    """What `build` returns (a side, its weights evaluated), with the MLX memory it leaves
    resident: its weights."""
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
    base = mx.get_active_memory()
    built = build()
    gc.collect()
    mx.clear_cache()
    return built, mx.get_active_memory() - base


def stage_speed(r: dict, stage: str, seconds: float) -> float:
    if stage == "whole_clip":
        return seconds / r["total"]
    if stage == "llm_prefill":
        return r["prefill_positions"] / r["llm_prefill"]
    if stage == "llm_decode":
        return (r["tokens"] - 1) / r["llm_decode"]
    if stage == "encoder+adaptor":
        return 1.0 / (r["encoder"] + r["adaptor"])
    return 1.0 / r[stage]


def peak_of(run, weights: int) -> dict:
    """One untimed run of a side with MLX's peak reset first: the run's working memory (its peak
    above what was resident at its start, both sides' weights) and, with its own weights, its peak
    as if alone."""
    import mlx.core as mx

    mx.clear_cache()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    run()
    working = mx.get_peak_memory() - before
    return {"weights_bytes": weights, "run_working_bytes": working, "peak_bytes": weights + working}


def ours_loaded(bundle, tokens: int):
    import mlx.core as mx

    pipe = load_pipeline(bundle, Backend.MLX, decode=bench_decode(tokens))
    mx.eval(pipe.sensevoice.parameters(), pipe.adaptor.parameters(), pipe.llm.model.parameters())  # loads are lazy
    return pipe


def ours_run(pipe, samples: np.ndarray) -> dict:
    t = time.perf_counter()
    out = pipe.run(samples)
    total = time.perf_counter() - t
    prompt, rows = pipe.setup.prompt, int(out.audio_embeds.shape[0])
    return {**out.timings, "total": total, "tokens": len(out.decoded.ids), "audio_rows": rows,
            "prefill_positions": len(prompt.prefix_ids) + len(prompt.suffix_ids) + rows}


def peer_checkpoint(src: Path, out: Path, dtype: str) -> Path:
    """The original Fun-ASR-Nano directory `src` in the peer's layout, by its own converter, at
    `dtype` where the converter writes it (else float32), with the Qwen3 folder's tokenizer."""
    from funasr_mlx.checkpoints import convert_checkpoint

    cfg = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8"))
    llm_dir = src / cfg["llm_conf"]["init_param_path"]
    llm = json.loads((llm_dir / "config.json").read_text(encoding="utf-8"))
    # The peer's own config.yaml reader (nano_config_from_nano_yaml) fixes Qwen3-0.6B's numbers;
    # its dict form takes them from the Qwen3 folder, so a model of any size loads.
    rope = llm.get("rope_parameters") or {}
    peer_cfg = {"audio_encoder_conf": cfg["audio_encoder_conf"], "audio_adaptor_conf": cfg["audio_adaptor_conf"],
                "input_size": 560, "llm_conf": {"args": {**llm, "rope_theta": rope.get("rope_theta",
                                                                                  llm.get("rope_theta"))}}}
    log.info("peer: converting %s with funasr-mlx's convert_checkpoint (%s)", src / "model.pt",
             dtype if dtype in PEER_CONVERT_DTYPES else "float32")
    convert_checkpoint(src / "model.pt", out, model="fun-asr-nano", source_rule="fun-asr-nano",
                       dtype=dtype if dtype in PEER_CONVERT_DTYPES else "float32", config=peer_cfg,
                       stream_large_tensors=True)
    for f in llm_dir.iterdir():  # it reads the tokenizer beside its checkpoint
        if f.is_file() and f.name.startswith("tokenizer"):
            shutil.copy(f, out / f.name)
    return out


def _timed_transcriber():
    """The peer's LlmAsrTranscriber, stamping the end of its prefill (its first-token hook) and of
    its token loop (before the ids become text)."""
    from funasr_mlx.llm_asr import LlmAsrTranscriber

    class Timed(LlmAsrTranscriber):
        def _greedy_first(self, logits):
            self.prefilled = time.perf_counter()
            return super()._greedy_first(logits)

        def _decode_tokens(self, out, **kw):
            self.decoded = time.perf_counter()
            return super()._decode_tokens(out, **kw)
    return Timed


class PeerNano:
    """The peer's Fun-ASR-Nano run stage by stage: its frontend, encoder, adaptor (the steps of
    its `_audio_embeds`, each evaluated, as ours are timed), then its own `_decode` (prefill and
    its greedy loop of chained steps)."""

    def __init__(self, ckpt: Path, tokens: int, dtype: str, q_bits: int | None):
        import mlx.core as mx
        from funasr_mlx.frontend import FbankConfig, WavFrontend
        from funasr_mlx.models.llm import KVCache
        from funasr_mlx.models.llm.quant import apply_quantization

        self.mx = mx
        self.tr = _timed_transcriber()(ckpt, family="fun-asr-nano", max_tokens=tokens)
        self.package = f"funasr-mlx {importlib.metadata.version('funasr-mlx')}"
        self.tr._eos = ()  # random weights: always `tokens` ids, as ours (EOS ignored)
        model = self.tr.model
        self.tr._caches = [KVCache() for _ in model.llm.model.layers]  # its own count is Qwen3-0.6B's 28
        self.how = (f"funasr-mlx convert_checkpoint(model.pt, source_rule='fun-asr-nano', "
                    f"dtype={dtype if dtype in PEER_CONVERT_DTYPES else 'float32'}) + LlmAsrTranscriber")
        self.differs = [("prompt: the peer's own ('You are a speech recognition model.' ... '语音转写：'), "
                         "ours FunASR's template: prefill positions differ (prefill compared per position)"),
                        "decode: the peer chains 4 steps per host round trip (its decode_batch), ours one"]
        if dtype not in PEER_CONVERT_DTYPES:
            model.set_dtype(getattr(mx, dtype))
            self.how += f", cast to {dtype} by set_dtype"
            self.differs.append(f"{dtype}: the peer's converter writes float16/float32 only from model.pt, so "
                                "its float32 conversion is cast in memory")
        if q_bits:
            apply_quantization(model, {"bits": q_bits, "group_size": Q_GROUP,
                                       "targets": ["llm.model.layers", "llm.model.embed_tokens"]})
            self.how += f", {q_bits}-bit by its apply_quantization in memory (group {Q_GROUP})"
        mx.eval(model.parameters())
        self.dtype = model.audio_encoder._weight_dtype()
        self.frontend = WavFrontend(FbankConfig(frame_length=25.0, frame_shift=10.0, dither=0.0, window="hamming",
                                                n_mels=80, lfr_m=7, lfr_n=6), cmvn=None)

    def run(self, samples: np.ndarray) -> dict:
        mx, tr, r = self.mx, self.tr, {}
        t0 = time.perf_counter()
        fb = np.asarray(self.frontend(samples), dtype=np.float32)
        speech = mx.array(fb)[None].astype(self.dtype)
        mx.eval(speech)
        t1 = time.perf_counter()
        enc, _ = tr.model.audio_encoder(speech, mx.array([fb.shape[0]], dtype=mx.int32))
        mx.eval(enc)
        t2 = time.perf_counter()
        embeds = tr.model.audio_adaptor(enc)
        mx.eval(embeds)
        t3 = time.perf_counter()
        _, ids = tr._decode(embeds, fake_len(fb.shape[0]))
        t4 = time.perf_counter()
        rows = min(int(embeds.shape[1]), fake_len(fb.shape[0]))  # what its _decode splices
        r.update(frontend=t1 - t0, encoder=t2 - t1, adaptor=t3 - t2, llm_prefill=tr.prefilled - t3,
                 llm_decode=tr.decoded - tr.prefilled, total=t4 - t0, tokens=len(ids),
                 audio_rows=rows, prefill_positions=len(tr._prefix) + rows + len(tr._tail))
        return r


def fake_len(frames: int) -> int:
    """The audio rows the peer splices into its prompt for `frames` LFR frames (its `_audio_embeds`)."""
    n = 1 + (frames - 3 + 2) // 2
    n = 1 + (n - 3 + 2) // 2
    return (n - 1) // 2 + 1


def to_markdown(r: dict) -> list[str]:
    b, peers = r["blocks"], r["peers"]
    sides = ["ours", *peers]
    lines = [(f"\nFun-ASR-Nano, ours vs the peers on the same random weights, {r['clip_s']:g} s clip, "
             f"{' / '.join(_counts(r['tokens'][s]) for s in sides)} tokens ({', '.join(sides)}), {b['n']} interleaved "
             f"blocks of {b['k']}:")]
    lines.extend(f"- {name}: {p['package']}: {p['loaded']}" for name, p in peers.items())
    lines.extend(["", "| stage | unit | " + " | ".join(sides) + " | "
                  + " | ".join(f"ours / {name} speed | spread over blocks" for name in peers) + " |",
                  "|---|---|" + "---|" * (len(sides) + 2 * len(peers))])
    for stage, s in r["stages"].items():
        cells = [f"{s[side]['median']:.4g}" for side in sides]
        for name in peers:
            q = s["ours_over"][name]
            cells += [f"{q['median']:.2f}", f"{q['min']:.2f}-{q['max']:.2f} (IQR {q['iqr'][0]:.2f}-{q['iqr'][1]:.2f})"]
        lines.append(f"| {stage} | {s['unit']} | " + " | ".join(cells) + " |")
    m = r["memory"]
    lines.append("RTF " + ", ".join(f"{side} {r['rtf'][side]:.4f}" for side in sides) + "; prefill positions "
                 + ", ".join(f"{side} {r['prefill_positions'][side]}" for side in sides))
    lines.append("peak memory (each side's own run, MLX peak reset first; weights + the run's working memory): "
                 + ", ".join(f"{k} {v['peak_bytes'] / 2**30:.3f} GiB (weights {v['weights_bytes'] / 2**30:.3f})"
                             for k, v in m.items())
                 + "; " + ", ".join(f"ours / {name} {m['ours']['peak_bytes'] / m[name]['peak_bytes']:.2f}"
                                    for name in peers))
    lines.extend(f"differs ({name}): {d}" for name, p in peers.items() for d in p["differs"])
    return lines


def _counts(counts: list[int]) -> str:
    return ", ".join(map(str, counts))
