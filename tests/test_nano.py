"""Fun-ASR-Nano (bundle kind `funasr-nano`): its prompt against FunASR's own FunASRNano methods,
a tiny checkpoint in FunASR's layout (FunASR's classes, seeded), conversion and its refusals, a
hub id from a Hugging Face cache, and float32 parity of the two paths."""

from __future__ import annotations

import types

import numpy as np
import pytest

from funasr_qwen4b.config import NanoAdaptorConfig
from funasr_qwen4b.prompt import Prompt, nano_template


@pytest.fixture(scope="module")
def qwen_tokenizer_dir(tmp_path_factory):
    """Qwen's real tokenizer saved as a Hugging Face folder: what FunASR's HuggingfaceTokenizer loads."""
    from funasr_qwen4b.testing import qwen_tokenizer

    out = tmp_path_factory.mktemp("qwen_tok")
    qwen_tokenizer().save_pretrained(out)
    return out


def _funasr_source_ids(tokenizer, frontend, samples, *, hotwords, language, itn, low_frame_rate):
    """FunASR's own prompt path: FunASRNano.get_prompt → generate_chatml → data_template →
    data_load_speech, called unbound (they read nothing of the model but use_low_frame_rate)."""
    import torch

    from funasr_qwen4b.reference import quiet_funasr  # noqa: F401
    from funasr.models.fun_asr_nano.model import FunASRNano

    this = types.SimpleNamespace(use_low_frame_rate=low_frame_rate)
    prompt = FunASRNano.get_prompt(this, hotwords, language, itn)
    chat = FunASRNano.generate_chatml(this, prompt, torch.from_numpy(samples))
    out = FunASRNano.data_load_speech(this, FunASRNano.data_template(this, chat), tokenizer, frontend, meta_data={})
    return out["source_ids"][0].tolist(), int(out["fbank_beg"][0, 0]), int(out["fake_token_len"][0, 0]), \
        int(out["speech_lengths"].reshape(-1)[0])


@pytest.mark.parametrize("low_frame_rate", [True, False])
def test_prompt_ids_equal_funasr(qwen_tokenizer_dir, clip, low_frame_rate):
    """Token for token: our template (text before and after the one audio slot) and the number of
    audio rows equal what FunASR's FunASRNano builds with the real Qwen tokenizer, for language
    None/中文/英文 (and the code "en"), ITN on/off, with and without hotwords."""
    from funasr_qwen4b.reference import quiet_funasr  # noqa: F401
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.tokenizer.hf_tokenizer import HuggingfaceTokenizer

    tokenizer = HuggingfaceTokenizer(init_param_path=str(qwen_tokenizer_dir))
    frontend = WavFrontend(cmvn_file=None, fs=16000, window="hamming", n_mels=80, frame_length=25, frame_shift=10,
                           lfr_m=7, lfr_n=6, dither=0.0)
    samples = clip[:16000 * 2].astype(np.float32)
    cfg = NanoAdaptorConfig(use_low_frame_rate=low_frame_rate)
    cases = [([], None, True), ([], "中文", True), ([], "英文", False), (["阿里巴巴", "FunASR", "通义"], None, True),
             (["热词"], "中文", False), (["Hello world"], "English", True)]
    for hotwords, language, itn in cases:
        ids, beg, rows, frames = _funasr_source_ids(tokenizer, frontend, samples, hotwords=hotwords,
                                                    language=language, itn=itn, low_frame_rate=low_frame_rate)
        ours = Prompt.build(nano_template(hotwords, language, itn), tokenizer)
        assert cfg.audio_rows(frames) == rows, (hotwords, language, itn)
        assert ours.prefix_ids == ids[:beg], (hotwords, language, itn)
        assert ours.suffix_ids == ids[beg + rows:], (hotwords, language, itn)
    # a language code maps to the name the model was trained with
    assert nano_template(language="en") == nano_template(language="英文")
    assert nano_template(language="auto") == nano_template()


def test_prompt_refuses_markers():
    for bad in (["{audio}"], ["a<|startofspeech|>"], [""]):
        with pytest.raises(ValueError, match="hotword"):
            nano_template(bad)
