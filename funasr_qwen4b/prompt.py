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

# --- Fun-ASR-Nano: FunASRNano.get_prompt + generate_chatml + data_load_speech ------
# Its user turn is the instruction, then `<|startofspeech|>!…<|endofspeech|>`, which
# data_load_speech cuts out of the text and replaces by one placeholder per audio row:
# exactly our `{audio}` slot, the text on each side tokenized on its own.
NANO_TEMPLATE = "funasr-nano"
NANO_SYSTEM = "You are a helpful assistant."
# Codes for the language names the model was trained with ("语音转写成中文："); any other
# name is put in the instruction as given, as FunASR does.
NANO_LANGUAGES = {"zh": "中文", "en": "英文", "ja": "日文"}
_NANO_HOTWORDS_PREAMBLE = ("请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n\n\n"
                           "**上下文信息：**\n\n\n")
_SPEECH_MARKERS = ("<|startofspeech|>", "<|endofspeech|>", AUDIO_SLOT)


def nano_instruction(hotwords: list[str] | tuple[str, ...] = (), language: str | None = None, itn: bool = True) -> str:
    """FunASRNano.get_prompt: the hotword preamble, "语音转写" or "语音转写成{language}",
    "，不进行文本规整" without inverse text normalisation, then "："."""
    for word in hotwords:
        if not isinstance(word, str) or not word.strip() or any(m in word for m in _SPEECH_MARKERS):
            raise ValueError(f"hotword {word!r} is empty or holds a speech marker ({', '.join(_SPEECH_MARKERS)}); "
                             f"remove it")
    if language is not None and (not language.strip() or any(m in language for m in _SPEECH_MARKERS)):
        raise ValueError(f"language {language!r} is empty or holds a speech marker")
    text = f"{_NANO_HOTWORDS_PREAMBLE}热词列表：[{', '.join(hotwords)}]\n" if hotwords else ""
    name = None if language in (None, "auto") else NANO_LANGUAGES.get(language, language)
    text += "语音转写" if name is None else f"语音转写成{name}"
    return text + ("" if itn else "，不进行文本规整") + "："


def nano_template(hotwords: list[str] | tuple[str, ...] = (), language: str | None = None, itn: bool = True) -> str:
    """The whole Fun-ASR-Nano prompt as a template: FunASRNano.data_load_speech's ChatML (system
    turn, user turn, the assistant turn opened) with the instruction before the audio."""
    return (f"<|im_start|>system\n{NANO_SYSTEM}<|im_end|>\n<|im_start|>user\n"
            f"{nano_instruction(hotwords, language, itn)}{AUDIO_SLOT}<|im_end|>\n<|im_start|>assistant\n")
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

