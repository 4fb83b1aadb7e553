"""The server's errors, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

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
