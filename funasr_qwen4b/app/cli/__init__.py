"""`funasr-qwen4b`: one entry point, one module per subcommand, and one error boundary.

Heavy imports (torch, FunASR, MLX) happen inside each command, so `--help`
is instant and the MLX commands never import torch.

Exit status: 0 done; 1 a check failed (parity over tolerance, verify found damage);
2 the input is wrong (one line: the file, what is wrong, what to do); 70 an internal
error, a bug (one line; --debug or FUNASR_QWEN4B_DEBUG=1 shows the traceback); 74 the
machine failed the command (a full disk, no permission, a read-only file system, TMPDIR
missing, ffmpeg missing: one line naming the resource and where); 130 interrupted (Ctrl-C);
143 terminated (SIGTERM). Nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import sys
import threading
import traceback
from pathlib import Path

from ... import __version__
from ...atomic import abandon
from ...audio import FfmpegMissing
from . import bench, cer, cer_merge, convert, parity, serve, transcribe, verify
from .args import PROG, setup_logging

log = logging.getLogger(PROG)

DEBUG_ENV = "FUNASR_QWEN4B_DEBUG"
EXIT_USAGE, EXIT_INTERNAL, EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 70, 74, 130, 143  # 74: EX_IOERR
# What the machine refused, by errno: said as such, with where, and never called a bug or bad input.
ENVIRONMENT = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is used up",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EROFS: "the file system is read-only", errno.EIO: "input/output error (the disk or its link)"}
# Where a command writes, by the flag that says so: a failed write that names no file happened there.
OUTPUT_FLAGS = {"output": "-o", "output_dir": "--output-dir", "report": "--report", "json": "--json",
                "dump": "--dump", "keep": "--keep"}
# Which extra of funasr-qwen4b-mlx brings each optional top-level module.
EXTRAS = {"torch": "reference", "funasr": "reference", "kaldi_native_fbank": "reference", "torchaudio": "reference",
          "mlx": "mlx", "mlx_lm": "mlx", "fastapi": "serve", "uvicorn": "serve", "multipart": "serve",
          "python_multipart": "serve", "starlette": "serve"}

EXAMPLES = """examples:
  funasr-qwen4b selfcheck                                    # no download: parity on random test checkpoints
  funasr-qwen4b convert bundle --sensevoice SenseVoiceSmall/ --adaptor adaptor.pt --llm Qwen3-4B/ -o bundle/
  funasr-qwen4b transcribe a.wav b.flac -m bundle/
  funasr-qwen4b parity -m bundle/ --audio a.wav --report parity.json
  funasr-qwen4b cer -m bundle/ --manifest test.jsonl --backend both --report cer.json
  funasr-qwen4b verify -m bundle/                            # every byte against the checksums of conversion
  funasr-qwen4b convert bundle --funasr-nano FunAudioLLM/Fun-ASR-Nano-2512 -o nano/
  funasr-qwen4b transcribe a.wav -m nano/ --hotwords "通义,FunASR"   # Fun-ASR-Nano, with hotwords

exit status: 0 done, 1 a check failed, 2 bad input (one line says what to do), 70 internal error (a bug:
--debug or FUNASR_QWEN4B_DEBUG=1 shows its traceback), 74 the machine failed (disk full, no permission,
read-only, TMPDIR missing, ffmpeg missing: one line says which and where), 130 Ctrl-C, 143 SIGTERM
"""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (for `main(argv)` from Python) so that every `finally`
    (staging directories) runs."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "SenseVoiceSmall → audio adaptor → Qwen3-4B on Apple MLX, with FunASR/PyTorch as the reference "
        "and a layer-by-layer parity harness."), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    p.add_argument("--debug", action="store_true",
                   help=f"show the traceback of any error (also: {DEBUG_ENV}=1); accepted after the command too")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, transcribe, parity, cer, cer_merge, bench, serve, verify):
        module.add_parser(sub)
    _add_debug(sub)
    return p


def _add_debug(sub: argparse._SubParsersAction) -> None:
    """`--debug` after any (sub)command as well; SUPPRESS keeps the global flag's value when it is absent.
    Each (sub)command's parser is kept in `args.parser` (the innermost given), to refuse a conflict in its words."""
    for parser in sub.choices.values():
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        parser.set_defaults(parser=parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug(action)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _missing_module(e: ModuleNotFoundError) -> str:
    top = (e.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra:
        return f"this needs {top}, which comes with the {extra} extra: pip install 'funasr-qwen4b-mlx[{extra}]'"
    return (f"this needs the Python module {top or e.name!r}, which is not installed: reinstall with every extra, "
            f"pip install 'funasr-qwen4b-mlx[all]'")


class EnvironmentFault(Exception):
    """Something the command needs from the machine is not there or refused (exit 74)."""


def _free(path: Path | None) -> str:
    """`(N GB free there)` for the file system holding `path`, or "" when that cannot be told."""
    for p in (path, *(path.parents if path else ())):
        with contextlib.suppress(OSError, TypeError):
            return f" ({shutil.disk_usage(p).free / 1e9:.2f} GB free there)"
    return ""


def _target(args) -> Path | None:
    """Where the command writes, if it says (-o, --report, ...)."""
    return next((Path(v) for attr in OUTPUT_FLAGS if (v := getattr(args, attr, None))), None)


def environment_fault(e: BaseException, args) -> str | None:
    """One line naming the resource and where, when `e` is the machine's refusal, not the input's or ours."""
    if isinstance(e, EnvironmentFault):
        return str(e)
    if isinstance(e, OSError) and e.errno in ENVIRONMENT:
        where = e.filename or _target(args)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return (f"{ENVIRONMENT[e.errno]} writing {where or 'the output'}{_free(Path(where) if where else None)}; "
                    f"free some space or write elsewhere")
        if e.errno in (errno.EACCES, errno.EPERM):
            return f"{ENVIRONMENT[e.errno]}: {where}; check who owns it and its permissions, or use another path"
        if e.errno == errno.EROFS:
            return f"{where} is on a read-only file system; write elsewhere"
        return f"{ENVIRONMENT[e.errno]} on {where}"
    text = str(e)
    m = re.search(r"Unable to write (\d+) bytes", text)  # MLX's save on a failed write (a full disk)
    if isinstance(e, RuntimeError) and m:
        where = _target(args)
        return (f"could not write {int(m.group(1)):,} bytes under {where or 'the output'}"
                f"{_free(where)}: the disk is full or refused the write; free some space or write elsewhere")
    if isinstance(e, RuntimeError) and "temp_directory_path" in text:  # MLX (C++) found no temporary directory
        return _tmpdir_problem() or f"no usable temporary directory ({_one_line(e)}); set TMPDIR to one"
    if isinstance(e, FileNotFoundError) and "No usable temporary directory" in text:  # Python's tempfile
        return _tmpdir_problem() or _one_line(e)
    if isinstance(e, FfmpegMissing):
        return f"{_one_line(e)}; ffmpeg is not on PATH ({os.environ.get('PATH', '')})"
    return None


def _tmpdir_problem() -> str | None:
    """What is wrong with $TMPDIR, if it is set and is no writable directory."""
    tmp = os.environ.get("TMPDIR")
    if not tmp:
        return None
    if not os.path.exists(tmp):
        return f"the temporary directory TMPDIR={tmp} does not exist; create it, or set TMPDIR to one that does"
    if not os.path.isdir(tmp):
        return f"the temporary directory TMPDIR={tmp} is not a directory; set TMPDIR to one"
    if not os.access(tmp, os.W_OK | os.X_OK):
        return f"the temporary directory TMPDIR={tmp} is not writable; set TMPDIR to a directory you can write"
    return None


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """The command line. Without `argv` (the process's own: the console script, `python -m`) a
    signal ends the process at once, whatever the work is doing (`_stoppable`); with `argv`
    (called from Python, tests) a signal raises in the main thread (KeyboardInterrupt,
    Terminated) and every `finally` runs. It returns the exit status, argparse's too."""
    try:
        args = build_parser().parse_args(argv)
        conflict = args.conflicts(args) if hasattr(args, "conflicts") else None
        if conflict:  # options that contradict each other: refused by name, as argparse refuses a bad value
            args.parser.error(conflict)
    except SystemExit as e:  # argparse has said it all: --help or --version (0), a refused flag (2)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else EXIT_USAGE
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if getattr(args, "strict_fp32", False):
        os.environ.setdefault("MLX_ENABLE_TF32", "0")  # the strict fp32 tier; read when MLX loads
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        if argv is None and main_thread and not getattr(args, "handles_signals", False):
            return _stoppable(args, debug)
        return _run(args, debug)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _stoppable(args, debug: bool) -> int:
    """The process's own command line, stoppable at once: the work runs here, in the main thread,
    and may sit inside MLX or torch for minutes on a long input, where Python runs no signal
    handler. But the C-level handler of a signal Python handles writes the signal's number to the
    wakeup fd at once, and a watchdog thread waiting on it removes the staging directories and
    temporary files in use (atomic.abandon), says why, and ends the process with 130 or 143
    (os._exit: the work cannot be unwound). The Python-level handlers do nothing."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    handled = [sig for sig in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(sig) is not signal.SIG_IGN]  # a background job's ignored Ctrl-C stays so
    previous = {sig: signal.signal(sig, _noted) for sig in handled}
    wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch() -> None:
        while got := os.read(read, 1):  # b"": the command is done and closed the other end
            if got[0] in STOPPED:  # (another signal a library handles writes here too)
                _stop(*STOPPED[got[0]])
        os.close(read)  # here, not there: never under a read still running, nor a number reused meanwhile

    threading.Thread(target=watch, name="signal-watchdog", daemon=True).start()
    try:
        return _run(args, debug)
    finally:
        signal.set_wakeup_fd(wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(write)  # the watchdog reads b"" and ends


STOPPED = {signal.SIGINT: (EXIT_INTERRUPTED, "interrupted"), signal.SIGTERM: (EXIT_TERMINATED, "terminated (SIGTERM)")}


def _noted(signum, frame) -> None:
    """The Python-level handler of SIGINT and SIGTERM while the watchdog ends the process."""


def _stop(code: int, text: str) -> None:
    """End the process now: nothing half-written left, the reason said, the streams flushed.
    (A second signal only writes to the wakeup fd again: nobody reads it now.)"""
    abandon()
    log.error("%s: %s", PROG, text)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(OSError, ValueError):
            handler.flush()
    os._exit(code)


def _run(args, debug: bool) -> int:
    """`args.func(args)`, with every exception turned into one line and an exit status."""
    def fail(code: int, text: str) -> int:
        if debug:
            log.error("%s", traceback.format_exc().rstrip())
        log.error("%s: %s", PROG, text)
        return code

    def internal(e: Exception) -> int:
        hint = "the traceback is above" if debug else f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback"
        return fail(EXIT_INTERNAL, f"internal error (a bug, not your input): {type(e).__name__}: {_one_line(e)}; "
                                   f"{hint}, and please report it")

    try:
        tmp = _tmpdir_problem()
        if tmp:  # found now rather than half-way, in whichever library first wants a temporary file
            raise EnvironmentFault(tmp)
        return args.func(args)
    except ModuleNotFoundError as e:
        return fail(EXIT_USAGE, f"error: {_missing_module(e)}")
    except BrokenPipeError:  # stdout closed early (`| head`): nothing more to say, nowhere to say it
        with contextlib.suppress(OSError, ValueError):  # so that the flush at exit does not complain either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError, RuntimeError, EnvironmentFault) as e:
        environment = environment_fault(e, args)
        if environment:
            return fail(EXIT_ENVIRONMENT, f"error: {environment}")
        if isinstance(e, RuntimeError):
            return internal(e)
        # bad input: files, values, audio, manifests (AudioError is a ValueError)
        return fail(EXIT_USAGE, f"error: {_one_line(e)}")
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted")
    except Terminated:
        return fail(EXIT_TERMINATED, "terminated (SIGTERM)")
    except Exception as e:
        return internal(e)

