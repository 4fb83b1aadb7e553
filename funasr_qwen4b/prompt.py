"""Prompt templates: where the audio rows sit among the LLM's text tokens.

One mechanism for every layout this model family has used (docs/model.md, "How
audio reaches the LLM"): a template is text with
exactly one `{audio}` slot. Text around it is tokenized without added
special tokens; special tokens written in it (`<|im_start|>`) are kept as
such. Both paths build their input sequence from `Prompt`, here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AUDIO_SLOT = "{audio}"
_CHATML = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
           "<|im_start|>user\n{audio}<|im_end|>\n<|im_start|>assistant\n")
PRESETS = {
    "raw": "{audio}",  # phase-2 training: [audio_features, text_tokens], no ChatML
    "prefix": "这是一段中文语音，请转录：{audio}",
    "prefix-suffix": "语音转写成中文：{audio}只输出转写文字，不要分析或解释：",
    "chatml": _CHATML,
    "chatml-nothink": _CHATML + "<think>\n\n</think>\n\n",
}
DEFAULT_TEMPLATE = "raw"
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
TRANSLATE_TEMPLATE = ("<|im_start|>user\nTranslate the following Chinese text into English. "
                      "Output only the translation.\n\n{text}<|im_end|>\n<|im_start|>assistant\n"
                      "<think>\n\n</think>\n\n")


def template_text(name: str | None = None, file: str | Path | None = None, presets: dict[str, str] | None = None,
                  default: str = DEFAULT_TEMPLATE) -> str:
    """A template by file, or by preset name (`presets` first, then ours; no name: `default`)."""
    presets = {**PRESETS, **(presets or {})}
    name = name or default
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read template file {file}: {e}") from None
    elif name in presets:
        text = presets[name]
    else:
        raise ValueError(f"unknown template {name!r}; use one of {sorted(presets)} or --template-file")
    if not isinstance(text, str) or text.count(AUDIO_SLOT) != 1:
        where = file or f"template {name!r}"
        found = text.count(AUDIO_SLOT) if isinstance(text, str) else 0
        raise ValueError(f"{where}: a template needs exactly one {AUDIO_SLOT} slot; found {found}")
    return text


@dataclass(frozen=True)
class Prompt:
    """Token ids before and after the audio rows."""

    prefix_ids: list[int]
    suffix_ids: list[int]

    @classmethod
    def build(cls, template: str, tokenizer) -> "Prompt":
        before, after = template.split(AUDIO_SLOT)
        return cls(encode(tokenizer, before), encode(tokenizer, after))


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def stop_ids(tokenizer) -> list[int]:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
    return [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]

