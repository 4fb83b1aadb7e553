"""A bfloat16 copy of a model directory the trainer wrote: the same files, the weights in half
the bytes, so that a trained model fits in a device call's carry beside the staged wheels and a
later run starts from it (`training.train --init`, training/RUN.md).

Run:  python -m training.bf16_copy /tmp/demo build/init
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def _halved(state: dict) -> dict:
    return {k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()}


def bf16_copy(src: Path, dst: Path) -> None:
    """`src` copied to `dst` (built in a staging directory beside it, then renamed), its three
    weight files in bfloat16."""
    import torch
    from safetensors.torch import load_file, save_file

    from funasr_qwen4b.atomic import staging
    from funasr_qwen4b.reference.torch_load import load_pt

    with staging(dst.parent, dst.name) as stage:
        tmp = stage / dst.name
        shutil.copytree(src, tmp)
        sv = tmp / "sensevoice" / "model.pt"
        torch.save(_halved(load_pt(sv)), sv)
        adaptor = load_pt(tmp / "adaptor.pt")
        adaptor["model_state_dict"] = _halved(adaptor["model_state_dict"])
        torch.save(adaptor, tmp / "adaptor.pt")
        llm = tmp / "qwen3" / "model.safetensors"
        save_file(_halved(load_file(llm)), llm, metadata={"format": "pt"})
        tmp.rename(dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("model", help="a model directory training.train wrote (sensevoice/, adaptor.pt, qwen3/)")
    ap.add_argument("out", help="the copy's directory (must not exist)")
    args = ap.parse_args(argv)
    src, dst = Path(args.model), Path(args.out)
    if dst.exists():
        sys.exit(f"error: {dst} exists; give a new directory")
    missing = [f for f in ("sensevoice/model.pt", "adaptor.pt", "qwen3/model.safetensors", "training_log.json")
               if not (src / f).is_file()]
    if missing:
        sys.exit(f"error: {src} has no {', '.join(missing)}: give a model directory training.train wrote")
    try:
        bf16_copy(src, dst)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        sys.exit(f"error: {src}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
