"""`import funasr`, with what it prints on import ("Notice: ffmpeg is not installed…")
sent to the log (stderr), so that a reference run's stdout holds results only.
The modules that use FunASR import this first; importing the reference package
itself (conversion reads .pt files through it) loads no FunASR."""

import contextlib
import io
import logging

_notice = io.StringIO()
with contextlib.redirect_stdout(_notice):
    import funasr  # noqa: F401
for _line in _notice.getvalue().splitlines():
    if _line.strip():
        logging.getLogger("funasr").debug(_line.strip())
del _notice
