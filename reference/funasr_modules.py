"""FunASR's model modules without its package __init__.

`import funasr` runs AutoModel's imports (hydra, modelscope, jieba, ...). A machine
that has torch but not those (a lent GPU machine) can still import
`funasr.models.sense_voice.model` and `funasr.frontends.wav_frontend` once
`funasr` is a bare namespace over its installed directory. FunASR's code is
unchanged; only its package initialisation is skipped.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def import_modules_only() -> None:
    if "funasr" in sys.modules:
        return
    spec = importlib.util.find_spec("funasr")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: FunASR is not installed (pip install funasr --no-deps is enough for its model modules)")
    pkg = types.ModuleType("funasr")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["funasr"] = pkg
