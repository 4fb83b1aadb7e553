"""16 requests to the server, sent one after another and then all at once, on the
real-size pipeline with random weights (bench --synthetic full: SenseVoiceSmall, the adaptor,
Qwen3-4B; nothing downloaded), decoding a fixed number of tokens per request.

    python benchmarks/server_batching.py --out benchmarks/server_batching.json [-q 4] [--batch-size 16]

Both runs decode one token per pass: speculation is off, since random weights give no draft
worth verifying, and the comparison is of batching alone. The texts must be the same in both.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from funasr_qwen4b.app.backends import load_pipeline  # noqa: E402
from funasr_qwen4b.app.bench_mlx import mlx_synthetic  # noqa: E402
from funasr_qwen4b.app.bench_stages import bench_decode, machine  # noqa: E402
from funasr_qwen4b.app.bench_batch import ragged_clips  # noqa: E402
from funasr_qwen4b.app.server import LLM_MODEL, create_app  # noqa: E402
from funasr_qwen4b.app.transcriber import Transcriber  # noqa: E402
from funasr_qwen4b.bundle import Bundle  # noqa: E402
from funasr_qwen4b.config import Backend  # noqa: E402

log = logging.getLogger("server_batching")


def wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV")
    return buf.getvalue()


def serve(pipe, batch_size: int) -> tuple[str, object, object]:
    """The server on a free port with `pipe` in place of a loaded bundle (loaded on the model's own
    thread, as the server loads): its transcription URL, its model slot and a function that stops it."""
    app = create_app("unused-bundle", idle_unload=0, batch_size=batch_size, max_audio_seconds=60)
    slot = app.state.manager.slots[LLM_MODEL]

    def load() -> None:
        slot.model = Transcriber(pipe() if callable(pipe) else pipe)

    slot.executor.submit(load).result()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)  # the lifespan's end shuts the model threads down

    return f"http://127.0.0.1:{sock.getsockname()[1]}/v1/audio/transcriptions", slot, stop


def ask(url: str, body: bytes) -> str:
    r = httpx.post(url, files={"file": ("a.wav", body)}, data={"model": LLM_MODEL}, timeout=600)
    r.raise_for_status()
    return r.json()["text"]


def synthetic(q_bits: int | None, tokens: int, bundle: str | None = None):
    """The pipeline the server runs: the synthetic weights (or a bundle), `tokens` tokens a request,
    one token per pass."""
    if bundle:
        pipe = load_pipeline(Bundle.read(bundle), Backend.MLX)
    else:
        pipe, _ = mlx_synthetic(q_bits, "float16", tokens)
    pipe.setup = pipe.setup.with_decode(replace(bench_decode(tokens), speculate="off"))
    return pipe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("-q", "--q-bits", type=int, choices=[4, 8])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--bundle", help="a converted bundle instead of the synthetic weights (a quick check)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    url, slot, stop = serve(lambda: synthetic(args.q_bits, args.tokens, args.bundle), args.batch_size)
    bodies = [wav(x) for x in ragged_clips(args.requests)]  # what bench --batch-sizes batches

    def all_at_once() -> list[str]:
        with ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(lambda b: ask(url, b), bodies))

    ask(url, bodies[0])  # warm-up, alone and batched: kernels compiled for both paths' shapes, caches filled
    all_at_once()
    t = time.perf_counter()
    one_by_one = [ask(url, b) for b in bodies]
    sequential = time.perf_counter() - t
    batches, batched = slot.stats["batches"], slot.stats["batched"]
    t = time.perf_counter()
    together = all_at_once()
    concurrent = time.perf_counter() - t
    stop()
    stats = slot.state()
    rep = {"machine": machine(), "requests": args.requests, "tokens_per_request": args.tokens,
           "llm": args.bundle or f"Qwen3-4B random weights, {'bf16' if not args.q_bits else f'{args.q_bits}-bit'}",
           "batch_size": args.batch_size, "sequential_s": sequential, "concurrent_s": concurrent,
           "speedup": sequential / concurrent, "texts_identical": one_by_one == together,
           "timed_batches": stats["batches"] - batches, "timed_batched_requests": stats["batched"] - batched}
    Path(args.out).write_text(json.dumps(rep, indent=2))
    print(json.dumps(rep, indent=2))
    return 0 if rep["texts_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
