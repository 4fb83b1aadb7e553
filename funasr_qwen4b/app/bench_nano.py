"""`bench --synthetic nano`: Fun-ASR-Nano at its real size with random weights, as a bundle.

Unlike `--synthetic full` (MLX modules built in memory), the checkpoint is written in FunASR's
original layout by FunASR's own FunASRNano (funasr_qwen4b.testing_nano) and converted by
`convert_nano`, the path a downloaded Fun-ASR-Nano takes: so both backends run what they run on
a real one (the reference FunASR's FunASRNano from the original directory, MLX the bundle), and a
peer that loads FunASR's layout can be given the same files. It needs torch and FunASR.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ..atomic import scratch
from ..bundle import Bundle
from ..testing import REAL
from ..testing_nano import NANO_ADAPTOR_REAL, QWEN3_06B

log = logging.getLogger(__name__)

# Fun-ASR-Nano-2512's dimensions: SenseVoiceSmall's 70-layer encoder, the 2-layer adaptor
# (512 → 2048 → 1024), Qwen3-0.6B.
NANO_ENCODER, NANO_ADAPTOR, NANO_LLM = REAL, NANO_ADAPTOR_REAL, QWEN3_06B


@contextlib.contextmanager
def nano_synthetic(dtype: str, q_bits: int | None, dims: tuple[dict, dict, dict] | None = None) -> Iterator[Bundle]:
    """The random real-size Fun-ASR-Nano converted at `dtype` (every component; `q_bits`: the
    LLM quantized), in a scratch directory that lives, original files included, while inside.
    `dims` (encoder, adaptor, Qwen3), for tests only: another size."""
    from funasr_qwen4b.convert.nano import convert_nano
    from funasr_qwen4b.testing_nano import make_nano_dir

    encoder, adaptor, llm = dims or (NANO_ENCODER, NANO_ADAPTOR, NANO_LLM)
    with scratch("funasr-qwen4b-bench-nano-") as work:
        log.info("synthetic Fun-ASR-Nano: FunASR's FunASRNano, random weights (encoder %s, adaptor %s, Qwen3 %s) in %s",
                 encoder, adaptor, llm, work)
        src = make_nano_dir(work / "Fun-ASR-Nano-random", encoder, adaptor, llm)
        yield Bundle.read(convert_nano(src, work / "bundle", dtype=dtype, q_bits=q_bits))
