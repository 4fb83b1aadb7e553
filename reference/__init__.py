"""The PyTorch reference path: FunASR's own modules, loaded from the original files.

FunASR prints notices on stdout when it is imported ("Notice: ffmpeg is not
installed…"); here they go to the log (stderr), so a reference run's stdout
holds results only.
"""

import contextlib
import io
import logging

_notice = io.StringIO()
with contextlib.redirect_stdout(_notice):
    try:
        import funasr  # noqa: F401  (its import-time prints, captured)
    except ImportError:  # the reference extra is not installed: the importer reports it
        pass
for _line in _notice.getvalue().splitlines():
    if _line.strip():
        logging.getLogger("funasr").debug(_line.strip())
del _notice
