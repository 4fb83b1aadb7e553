"""An OpenAI-compatible transcription server on the MLX port.

    funasr-qwen4b serve -m bundle/ --port 8000
    curl -F file=@clip.wav -F model=funasr-qwen4b http://127.0.0.1:8000/v1/audio/transcriptions
    funasr-qwen4b serve -m bundle/ -m nano/       # a qwen4b and a Fun-ASR-Nano bundle at once
    curl -F file=@clip.wav -F model=fun-asr-nano -F prompt=通义,FunASR http://127.0.0.1:8000/v1/audio/transcriptions

Endpoints (OpenAI's request and response shapes, its error shape
`{"error": {"message", "type", "param", "code"}}` for every 4xx/5xx):

    POST   /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format,
                                      timestamp_granularities[], include[], stream
    POST   /v1/audio/translations     multipart: file, model, prompt, response_format (English text)
    GET    /v1/models                 the models served, with `loaded`
    GET    /v1/models/{id}
    POST   /v1/models/{id}/load       load now (otherwise the first request loads it)
    POST   /v1/models/{id}/unload     free it now (DELETE /v1/models/{id} does the same)
    GET    /health                    per-model state, queue, counters, memory

The file may be any container the command line reads (through ffmpeg for M4A, MP4,
WebM, ...). verbose_json lists each word's times when timestamp_granularities[] asks
for words (models with a CTC head), and json and verbose_json each token's
log-probability for include[]=logprobs (models with an LLM; verbose_json's segments
carry their avg_logprob whenever there is one). OpenAI's
model names (whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe) answer as the
default model.

Statuses: 400 for what the request sent (audio unreadable, empty, shorter than 100 ms or
over the limit; bad fields), 404 unknown model, 413 over the upload limit, 503 when the
model cannot serve (a component missing, a file damaged, a bad bundle setting: the
other model keeps serving), 500 only for a bug. A client that goes before its answer
(a timeout, a closed connection) is not decoded: its queued job is skipped and a
running one stops at its next piece of text, streaming or not.

Models, each a `Transcriber`, by the kind of each bundle given (one bundle of
each kind): a qwen4b bundle serves `funasr-qwen4b` (SenseVoice → adaptor →
Qwen3) and `sensevoice-small` (SenseVoice's own CTC head); a Fun-ASR-Nano bundle
serves `fun-asr-nano`, whose `prompt` field carries hotwords (words separated by
commas or newlines; the other models accept `prompt` and ignore it, and refuse
the extra `hotwords` field with 400). Each model has one
worker thread: loading, decoding and unloading all happen there, in order, so
the requests for one model queue while the event loop stays free. Requests that
wait together (same language, task and hotwords) run as one batch of up to `batch_size`
(Transcriber.transcribe_batch); one that arrives while a batch decodes joins the
next. Each request streams and is cancelled on its own: a client that goes ends
its own row. A model is loaded on first use and unloaded after `idle_unload`
seconds without a request, or on request.

    errors.py    ApiError and OpenAI's error shape, for uvicorn's own 400 too
    slots.py     ServerConfig, the models' slots and lifetimes, memory figures
    requests.py  the form parsed and checked, the upload decoded, the upload limit
    formats.py   json/text/verbose_json/srt/vtt, server-sent events
    routes.py    create_app (the endpoints), uvicorn_options, serve

Importing this package imports neither torch nor MLX; MLX is imported when a
model loads.
"""

from .routes import create_app, serve, uvicorn_options
from .slots import CTC_MODEL, KIND_MODELS, LLM_MODEL, MODELS, NANO_MODEL, ServerConfig

__all__ = ["CTC_MODEL", "KIND_MODELS", "LLM_MODEL", "MODELS", "NANO_MODEL", "ServerConfig", "create_app", "serve",
           "uvicorn_options"]
