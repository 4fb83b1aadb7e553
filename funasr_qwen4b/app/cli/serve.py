"""`funasr-qwen4b serve`: the OpenAI-compatible server's command line.

FastAPI and uvicorn (the `serve` extra) are imported when the command runs,
so building the parser (`funasr-qwen4b --help`) needs neither.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from .args import MAX_SECONDS, add_model_arg, add_speculate_arg, add_template_args, bundle_from, finite, integer, \
    template_from

log = logging.getLogger(__name__)

MIN_UPLOAD_MB = 0.001  # server.slots.MIN_UPLOAD_MB, without importing FastAPI
MODEL_IDS = ("funasr-qwen4b", "sensevoice-small")  # server.MODELS, without importing FastAPI


def add_parser(sub) -> None:
    sp = sub.add_parser(
        "serve", help="OpenAI-compatible transcription server (MLX)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the bundle over HTTP with OpenAI's audio API, so the official `openai` client and "
        "tools that speak it work unchanged:\n\n"
        "  POST /v1/audio/transcriptions  multipart file, model, language, prompt, response_format\n"
        "                                 (json|text|verbose_json|srt|vtt), stream=true for server-sent events\n"
        "  POST /v1/audio/translations    English text (a second, text-only LLM pass)\n"
        "  GET  /v1/models, GET /health\n"
        "  POST /v1/models/ID/load, POST /v1/models/ID/unload (or DELETE /v1/models/ID)\n\n"
        "Models: funasr-qwen4b (SenseVoice → adaptor → Qwen3; the bundle needs all three) and sensevoice-small "
        "(SenseVoice's CTC head). Each loads on its first request and is unloaded after --idle-unload seconds "
        "without one. Requests for one model queue on its own thread; those waiting together run as one batch. `prompt` and "
        "`temperature` are accepted and ignored (greedy decoding, the bundle's prompt template).",
        epilog="Needs the serve extra: pip install 'funasr-qwen4b-mlx[serve]'. Binds 127.0.0.1 unless --host "
        "says otherwise; there is no authentication, so expose it only behind something that has.")
    add_model_arg(sp)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    sp.add_argument("--port", type=integer(1, 65535), default=8000, help="port (default %(default)s)")
    sp.add_argument("--default-model", choices=MODEL_IDS,
                    help="model for requests that name none (default: funasr-qwen4b when the bundle has the "
                    "adaptor and the LLM, else sensevoice-small)")
    sp.add_argument("--idle-unload", type=finite(above=0, zero="never"), default=600.0, metavar="SECONDS",
                    help="unload a model after this many seconds without a request (default %(default)g; 0 = never)")
    sp.add_argument("--max-upload-mb", type=finite(MIN_UPLOAD_MB, zero="no limit"), default=25.0,
                    help="largest request body, MB; larger ones get 413 (default %(default)g; 0 = no limit)")
    sp.add_argument("--max-audio-seconds", type=finite(above=0, zero="no limit"), default=600.0,
                    help="longest audio accepted; longer gets 400 (default %(default)g; 0 = no limit)")
    sp.add_argument("--max-seconds", type=MAX_SECONDS, default=30.0,
                    help="split longer audio at its quietest points into pieces this long, one segment each "
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


def cmd_serve(args) -> int:
    bundle = bundle_from(args)  # not a bundle: a one-line error before anything starts
    try:
        from ..server import ServerConfig, serve
    except ImportError as e:
        raise ValueError(f"serve needs FastAPI, uvicorn and python-multipart ({e}); "
                         "pip install 'funasr-qwen4b-mlx[serve]'") from None
    if not bundle.has("adaptor", "llm"):
        missing = [c for c in ("adaptor", "llm") if not bundle.has(c)]
        log.warning("the bundle has no %s: funasr-qwen4b will answer 503; sensevoice-small serves",
                    ", ".join(missing))
    cfg = ServerConfig(str(bundle.root), default_model=args.default_model, idle_unload=args.idle_unload,
                       max_upload_mb=args.max_upload_mb, max_audio_seconds=args.max_audio_seconds,
                       max_seconds=args.max_seconds, template=template_from(args, bundle),
                       batch_size=args.batch_size, batch_wait=args.batch_wait_ms / 1000,
                       decode=replace(bundle.decode, speculate=args.speculate) if args.speculate else None)
    log.info("serving %s on http://%s:%d/v1 (Ctrl-C stops)", args.model, args.host, args.port)
    serve(cfg, host=args.host, port=args.port, log_level=args.log_level)
    return 0
