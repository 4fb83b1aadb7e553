"""bench's PyTorch side: the reference pipeline from a bundle (float32 on the CPU, as its
path is written), or at real size with random weights on its best device (`torch_synthetic`)."""

from __future__ import annotations

import logging
import resource
import time

from ..config import AdaptorConfig, Backend, EncoderConfig
from .backends import load_pipeline
from .bench_stages import QWEN3_4B, STAGES, bench_decode, repeat, run_stages, stage_stats

log = logging.getLogger(__name__)


def reference_bench(bundle, in_memory: bool, samples, reps, warmup, tokens) -> dict:
    """The PyTorch reference, float32 on the CPU as its path is written (RSS peak), of the bundle;
    `in_memory`: `--synthetic full`'s models instead, built here (`torch_synthetic`)."""
    if in_memory:
        return torch_synthetic(samples, reps, warmup, tokens)
    pipe = load_pipeline(bundle, Backend.REFERENCE, decode=bench_decode(tokens))
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731
    r = {"clips": {}, "device": "cpu", "dtype": "float32"}
    for s, x in samples.items():
        log.info(f"reference: {s:.0f} s clip ...")
        r["clips"][f"{s:.0f}s"] = run_stages(pipe, x, reps, warmup, rss, None)
    return r


def torch_synthetic(samples, reps, warmup, tokens) -> dict:
    """PyTorch at real size, random weights, on its best device and dtype (CUDA,
    bfloat16, SDPA; decoding by transformers' generate with its static cache,
    which it compiles): the adaptor and the LLM. The encoder stage needs FunASR
    importable; where it is not (a bare GPU machine), it is reported as such."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from funasr_qwen4b.reference.adaptor import AudioAdaptorQwen4B

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = torch.bfloat16 if dev == "cuda" else torch.float32
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    torch.manual_seed(0)
    with torch.device(dev):
        ad = AudioAdaptorQwen4B(AdaptorConfig()).to(dt).eval()
        cfg = Qwen3Config(**{k: v for k, v in QWEN3_4B.items() if k != "model_type"})
        lm = Qwen3ForCausalLM(cfg).to(dt).eval()
    lm.config._attn_implementation = "sdpa"
    encoder = None
    try:
        from funasr.models.sense_voice.model import SenseVoiceEncoderSmall

        e = EncoderConfig()
        encoder = SenseVoiceEncoderSmall(input_size=560, output_size=e.output_size, attention_heads=e.attention_heads,
                                         linear_units=e.linear_units, num_blocks=e.num_blocks,
                                         tp_blocks=e.tp_blocks).to(dev).eval()
    except ImportError as err:
        log.warning(f"reference encoder not timed: FunASR is not importable here ({err})")

    def run_encoder(x, lens):
        # FunASR's encoder builds float32 masks that promote bf16 activations: it runs in
        # bf16 through autocast (float32 weights), the way mixed precision runs it.
        with torch.autocast(dev, dtype=dt, enabled=dev == "cuda"):
            return encoder(x.to(torch.float32, copy=True), lens)  # it scales its input in place

    def timed(fn):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - t, out

    r = {"device": dev, "dtype": str(dt), "decode": "transformers generate, static cache (compiled)", "clips": {}}
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        for s in samples:
            frames = 4 + -(-int(s * 100 - 1.5) // 6)  # LFR frames of s seconds + the 4 query rows
            x = torch.randn(1, frames, 560, device=dev, dtype=dt)
            lens = torch.tensor([frames], device=dev)
            stages = {k: [] for k in ("encoder", "adaptor", "llm_prefill", "llm_decode")}
            for keep in repeat(reps, warmup):
                enc_t = timed(lambda: run_encoder(x, lens))[0] if encoder is not None else float("nan")
                ad_t, audio = timed(lambda: ad(torch.randn(1, frames, 512, device=dev, dtype=dt)))
                def gen(n):
                    return lm.generate(inputs_embeds=audio, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                       cache_implementation="static")
                pre_t = timed(lambda: gen(1))[0]  # prefill and the first token, as in the MLX timing
                gen_t = timed(lambda: gen(tokens))[0]
                if keep:
                    for k, v in zip(stages, (enc_t, ad_t, pre_t, gen_t - pre_t)):
                        stages[k].append(v)
            st = {k: stage_stats(v) for k, v in stages.items()}
            r["clips"][f"{s:.0f}s"] = {
                "audio_s": s, "stages_s": {**{k: stage_stats([]) for k in STAGES}, **st}, "prefill_positions": frames,
                "total_s": stage_stats([sum(v) for v in zip(*[x for x in stages.values() if x and x[0] == x[0]])]),
                "prefill_tok_s": frames / st["llm_prefill"]["median"],
                "decode_tok_s": (tokens - 1) / st["llm_decode"]["median"], "generated_tokens": tokens}
            r["clips"][f"{s:.0f}s"]["rtf"] = r["clips"][f"{s:.0f}s"]["total_s"]["median"] / s
            log.info(f"reference {dev}: {s:.0f} s clip done")
    if dev == "cuda":
        r["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return r
