"""`python -m funasr_qwen4b.app.cli`: the same as the `funasr-qwen4b` command."""

import sys

from . import main

sys.exit(main())
