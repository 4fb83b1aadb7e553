"""`funasr-qwen4b serve`: the OpenAI-compatible server's command line.

FastAPI and uvicorn (the `serve` extra) are imported when the command runs,
so building the parser (`funasr-qwen4b --help`) needs neither.
"""

from __future__ import annotations

import argparse
import logging
import shutil

from ...bundle import Bundle
from .args import MAX_SECONDS, add_hub_args, add_segment_args, add_speculate_arg, add_template_args, finite, integer, \
    resolve_from, template_from

log = logging.getLogger(__name__)

MIN_UPLOAD_MB = 0.001  # server.slots.MIN_UPLOAD_MB, without importing FastAPI
MODEL_IDS = ("funasr-qwen4b", "sensevoice-small", "fun-asr-nano")  # server.MODELS, without importing FastAPI
# server.KIND_MODELS, without importing FastAPI
KIND_MODELS = {"qwen4b": ("funasr-qwen4b", "sensevoice-small"), "funasr-nano": ("fun-asr-nano",)}


def add_parser(sub) -> None:
    sp = sub.add_parser(
        "serve", help="OpenAI-compatible transcription server (MLX)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the bundle over HTTP with OpenAI's audio API, so the official `openai` client and "
        "tools that speak it work unchanged:\n\n"
        "  POST /v1/audio/transcriptions  multipart file (any format the transcribe command reads), model,\n"
        "                                 language, prompt, response_format (json|text|verbose_json|srt|vtt),\n"
        "                                 timestamp_granularities[]=word (word times in verbose_json),\n"
        "                                 stream=true for server-sent events\n"
        "  POST /v1/audio/translations    English text (a second, text-only LLM pass)\n"
        "  GET  /v1/models, GET /health\n"
        "  POST /v1/models/ID/load, POST /v1/models/ID/unload (or DELETE /v1/models/ID)\n\n"
        "Models, by each bundle's kind (-m once per bundle, one of each kind): a qwen4b bundle serves "
        "funasr-qwen4b (SenseVoice → adaptor → Qwen3; the bundle needs all three) and sensevoice-small "
        "(SenseVoice's CTC head); a Fun-ASR-Nano bundle serves fun-asr-nano, whose `prompt` field carries "
        "hotwords (separated by commas or newlines). Each model loads on its first request and is unloaded after "
        "--idle-unload seconds without one. OpenAI's model names (whisper-1, gpt-4o-transcribe, "
        "gpt-4o-mini-transcribe) answer as the default model. Requests for one model queue on its own thread; those waiting together "
        "run as one batch. The other models accept `prompt` and ignore it, and refuse a `hotwords` field; "
        "`temperature` is accepted and ignored (greedy decoding).",
        epilog="examples:\n  funasr-qwen4b serve -m bundle/ --port 8000\n"
        "  funasr-qwen4b serve -m bundle/ -m nano/ --default-model fun-asr-nano\n\n"
        "Needs the serve extra: pip install 'funasr-qwen4b-mlx[serve]'. Binds 127.0.0.1 unless --host "
        "says otherwise; there is no authentication, so expose it only behind something that has.")
    sp.add_argument("-m", "--model", action="append", required=True, metavar="BUNDLE",
                    help="bundle directory, or a hub id of one (e.g. user/bundle; see --hub); once per bundle, "
                    "a qwen4b one and a Fun-ASR-Nano one at most")
    add_hub_args(sp)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    sp.add_argument("--port", type=integer(1, 65535), default=8000, help="port (default %(default)s)")
    sp.add_argument("--default-model", choices=MODEL_IDS,
                    help="model for requests that name none or one of OpenAI's (whisper-1, ...) (default: the first "
                    "bundle's: funasr-qwen4b when it has the adaptor and the LLM, else sensevoice-small; fun-asr-nano)")
    sp.add_argument("--idle-unload", type=finite(above=0, zero="never"), default=600.0, metavar="SECONDS",
                    help="unload a model after this many seconds without a request (default %(default)g; 0 = never)")
    sp.add_argument("--max-upload-mb", type=finite(MIN_UPLOAD_MB, zero="no limit"), default=25.0,
                    help="largest request body, MB; larger ones get 413 (default %(default)g; 0 = no limit)")
    sp.add_argument("--max-audio-seconds", type=finite(above=0, zero="no limit"), default=600.0,
                    help="longest audio accepted; longer gets 400 (default %(default)g; 0 = no limit)")
    add_segment_args(sp)
    sp.add_argument("--max-seconds", type=MAX_SECONDS, default=30.0,
                    help="with --vad off: split longer audio at its quietest points into pieces this long "
                    "(default %(default)g; 0 = never)")
    sp.add_argument("--batch-size", type=integer(1), default=8, metavar="N",
                    help="requests for one model that wait together (same language and task) run as one batch "
                    "of up to N; a request alone decodes by itself, with speculation (default %(default)s)")
    sp.add_argument("--batch-wait-ms", type=finite(0, 10000), default=20.0, metavar="MS",
                    help="a batch that is not full waits while requests keep arriving at most this far apart, "
                    "up to ten times this in all (default %(default)g; 0 = never)")
    add_template_args(sp)
    add_speculate_arg(sp)
    sp.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                    help="uvicorn log level (default %(default)s)")
    # uvicorn handles Ctrl-C and SIGTERM itself: a graceful shutdown, the models unloaded
    sp.set_defaults(func=cmd_serve, handles_signals=True)


def bundles_from(args) -> dict[str, Bundle]:
    """Each -m's bundle by its kind (not a bundle, two of a kind, a flag no bundle takes: one line)."""
    bundles: dict[str, Bundle] = {}
    for spec in args.model:
        b = Bundle.read(resolve_from(args, spec, "bundle"))
        if b.kind in bundles:
            raise ValueError(f"-m {spec} and -m {bundles[b.kind].root} are both {b.kind} bundles; a server holds one "
                             f"of each kind (a {b.kind} bundle serves {', '.join(KIND_MODELS[b.kind])})")
        bundles[b.kind] = b
    served = [m for kind in bundles for m in KIND_MODELS[kind]]
    if args.default_model is not None and args.default_model not in served:
        raise ValueError(f"--default-model {args.default_model}: no -m bundle serves it (these serve "
                         f"{', '.join(served)})")
    if args.vad == "fsmn" and (lacking := [str(b.root) for b in bundles.values() if not b.has("vad")]):
        raise ValueError(f"--vad fsmn: {', '.join(lacking)} has no vad component; add one with `convert vad SRC -o "
                         f"BUNDLE`, or use --vad auto (the energy rule without one)")
    if (args.template or args.template_file) and "qwen4b" not in bundles:
        raise ValueError("--template/--template-file set funasr-qwen4b's prompt; no -m bundle is a qwen4b one "
                         "(Fun-ASR-Nano's prompt is built from each request's language and hotwords)")
    return bundles


def cmd_serve(args) -> int:
    bundles = bundles_from(args)  # not a bundle: a one-line error before anything starts
    try:
        from ..server import ServerConfig, serve
    except ImportError as e:
        raise ValueError(f"serve needs FastAPI, uvicorn and python-multipart ({e}); "
                         "pip install 'funasr-qwen4b-mlx[serve]'") from None
    qwen4b = bundles.get("qwen4b")
    if qwen4b is not None and not qwen4b.has("adaptor", "llm"):
        missing = [c for c in ("adaptor", "llm") if not qwen4b.has(c)]
        log.warning("%s has no %s: funasr-qwen4b will answer 503; sensevoice-small serves", qwen4b.root,
                    ", ".join(missing))
    cfg = ServerConfig([str(b.root) for b in bundles.values()], default_model=args.default_model,
                       idle_unload=args.idle_unload, max_upload_mb=args.max_upload_mb,
                       max_audio_seconds=args.max_audio_seconds, max_seconds=args.max_seconds, vad=args.vad,
                       max_segment_seconds=args.max_segment_seconds,
                       template=template_from(args, qwen4b) if qwen4b is not None else None,
                       batch_size=args.batch_size, batch_wait=args.batch_wait_ms / 1000, speculate=args.speculate)
    if shutil.which("ffmpeg") is None:
        log.warning("ffmpeg is not installed: uploads that libsndfile cannot read (M4A, MP4, WebM, ...) get 400; "
                    "WAV, FLAC, OGG and MP3 are read")
    log.info("serving %s on http://%s:%d/v1 (Ctrl-C stops)", ", ".join(args.model), args.host, args.port)
    serve(cfg, host=args.host, port=args.port, log_level=args.log_level)
    return 0
