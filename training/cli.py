"""What the training commands share: the option for a GPU machine that has torch but not
FunASR's many dependencies, and its effect."""

from __future__ import annotations

import argparse


def add_modules_only_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--funasr-modules-only", action="store_true",
                    help="import FunASR's model modules without its package __init__ (which imports the whole "
                         "toolkit): for a GPU machine that has torch but not FunASR's many dependencies")


def apply_modules_only_option(args: argparse.Namespace) -> None:
    if args.funasr_modules_only:
        from funasr_qwen4b.reference.funasr_modules import import_modules_only

        import_modules_only()
