"""Speculation on the demonstration model's held-out sets, MLX on the CPU: per LLM precision,
the share of utterances whose speculative ids equal plain greedy decoding's, tokens per pass
(ids after the first, over passes after the prefill), the share of the ids computed (stop ids
included) that the CTC draft supplied, and the passes queued on a failed bet (`voided`).

    MLX_ENABLE_TF32=0 .venv/bin/python benchmarks/speculation_heldout.py \
        --json benchmarks/cpu_speculation_heldout.json

Bundles are converted from models/demo as `convert bundle` does: `--dtype float32`; the default
(float32 SenseVoice and adaptor, bfloat16 LLM); `--dtype bfloat16`; and the default with `-q 8`
and `-q 4`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MLX_ENABLE_TF32", "0")

log = logging.getLogger("speculation_heldout")
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo"
SETS = ("zh_heldout", "en_heldout")
# name: convert_bundle keywords
VARIANTS = {
    "float32": dict(dtype="float32"),
    "bfloat16": dict(),  # the default: float32 SenseVoice and adaptor, bfloat16 LLM
    "bfloat16-all": dict(dtype="bfloat16"),
    "8bit": dict(llm_options={"q_bits": 8}),
    "4bit": dict(llm_options={"q_bits": 4}),
}


def measure(bundle: Path, details: bool) -> dict:
    from funasr_qwen4b.audio import load_audio
    from funasr_qwen4b.decoding import DecodeConfig
    from funasr_qwen4b.manifest import load_manifest
    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(bundle)
    plain_cfg = DecodeConfig(speculate="off")
    rows = []
    for name in SETS:
        for e in load_manifest(ROOT / "datasets" / name / "test.jsonl"):
            x = load_audio(e.audio)
            spec, plain = pipe.run(x), pipe.run(x, decode=plain_cfg)
            s = spec.decoded.stats
            row = {"id": e.id, "identical": spec.decoded.ids == plain.decoded.ids,
                   # ids after the first (the prefill's), and the stop token when one came
                   "tokens": len(spec.decoded.ids) - 1, "stop": spec.decoded.stop,
                   "forwards": s.forwards, "drafted": s.drafted, "accepted": s.accepted, "voided": s.voided}
            if details:
                row.update(ctc=spec.ctc.text, text=spec.text, plain_text=plain.text)
            rows.append(row)
    tokens = sum(r["tokens"] for r in rows)
    computed = tokens + sum(r["stop"] == "eos" for r in rows)  # the stop token too: a pass produced it
    forwards = sum(r["forwards"] for r in rows)
    accepted = sum(r["accepted"] for r in rows)
    quant = json.loads((Path(bundle) / "llm" / "config.json").read_text()).get("quantization")
    return {"llm": f"{quant['bits']}-bit" if quant else str(pipe.llm.dtype).removeprefix("mlx.core."),
            "utterances": len(rows), "identical": sum(r["identical"] for r in rows),
            "identical_share": sum(r["identical"] for r in rows) / len(rows),
            "tokens_after_first": tokens, "forwards": forwards, "tokens_per_pass": tokens / forwards,
            "tokens_with_stop": computed, "tokens_with_stop_per_pass": computed / forwards,
            "drafted": sum(r["drafted"] for r in rows), "accepted": accepted,
            "accepted_share": accepted / computed, "voided": sum(r["voided"] for r in rows),
            "per_utterance": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the report here (default: stdout only)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--details", action="store_true", help="keep each utterance's CTC and LLM text")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s")
    import mlx.core as mx

    from funasr_qwen4b.convert.bundle import convert_bundle

    mx.set_default_device(mx.cpu)
    command = ["benchmarks/speculation_heldout.py", *(sys.argv[1:] if argv is None else argv)]
    report = {"machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                          "mlx": mx.__version__, "device": "cpu", "MLX_ENABLE_TF32": os.environ["MLX_ENABLE_TF32"]},
              "command": "MLX_ENABLE_TF32=0 .venv/bin/python " + " ".join(command), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            bundle = convert_bundle(Path(tmp) / name, sensevoice=DEMO / "sensevoice", adaptor=DEMO / "adaptor.pt",
                                    llm=DEMO / "qwen3", **VARIANTS[name])
            r = measure(bundle, args.details)
            report["variants"][name] = r
            log.info(f"{name}: identical {r['identical']}/{r['utterances']}, {r['tokens_after_first']} tokens after "
                     f"the first in {r['forwards']} passes ({r['tokens_per_pass']:.2f} per pass), the draft supplied "
                     f"{r['accepted']} of {r['tokens_with_stop']} ({r['accepted_share']:.3f}), {r['voided']} voided")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {k: {f: v for f, v in r.items() if f != "per_utterance"} for k, r in report["variants"].items()}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
