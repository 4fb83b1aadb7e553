"""The server's errors, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import json
import re

from fastapi.responses import JSONResponse

from ...decoding import Stopped


class ApiError(Exception):
    """Rendered as OpenAI's error body with `status`."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


class ModelUnavailable(ApiError):
    """503: the model cannot load (a component is missing, a file is broken)."""

    def __init__(self, model: str, reason: str):
        super().__init__(503, f"model {model} is unavailable: {reason}", param="model", code="model_unavailable")


class Cancelled(Stopped):
    """Raised inside decoding when the client has gone: its decoding ends (its row alone, in a batch)."""


def internal(exc: BaseException) -> ApiError:
    """Any other exception, as a 500."""
    return ApiError(500, f"internal error: {type(exc).__name__}: {one_line(exc)}")


def one_line(text: object) -> str:
    """`text` on one line, with the address of an in-memory upload put in words."""
    return " ".join(re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the upload", str(text)).split())


BAD_HTTP = ("the request is not valid HTTP/1.1, or its request line and headers are too large (over 16 KB); "
            "send a well-formed request with smaller headers")


def http_protocol():
    """uvicorn's HTTP protocol class (h11, or httptools where installed), whose own 400 for what
    cannot be parsed as HTTP at all (malformed, headers over its limit), sent before the app sees
    a request, comes in OpenAI's error shape like every other error, instead of plain text."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class JsonErrorProtocol(AutoHTTPProtocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps(ApiError(400, BAD_HTTP, code="invalid_http_request").body()).encode()
            head = [b"HTTP/1.1 400 Bad Request", *(name + b": " + value for name, value in
                                                   self.server_state.default_headers),
                    b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
            self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)  # the parser is broken: bytes
            self.transport.close()

    return JsonErrorProtocol
