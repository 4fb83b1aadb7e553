"""The language spoken, as a result reports it: the one the user set, else the one detected.

qwen4b bundles detect it with SenseVoice's language identification: the first of the 4 query
frames' CTC tags (`<|zh|>`, `<|en|>`, ...), which the encoder outputs whatever language row it
was given. Fun-ASR-Nano has no CTC head: its transcript's script tells (kana: ja, Hangul: ko,
other Han characters: zh, Latin letters: en). A long input's pieces each detect their own; the
language of most of the speech (by seconds) is the input's.
"""

from __future__ import annotations

import unicodedata

# SenseVoice's language tags, as its tokenizer spells them (config.LANGUAGE_IDS less auto and nospeech).
LID_TAGS = {"<|zh|>": "zh", "<|en|>": "en", "<|yue|>": "yue", "<|ja|>": "ja", "<|ko|>": "ko"}
_SCRIPTS = (("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HANGUL", "ko"), ("CJK", "zh"), ("LATIN", "en"))


def from_tags(tags: list[str]) -> str | None:
    """The language of SenseVoice's LID tag among `tags`, or None (no speech, no tag)."""
    return next((LID_TAGS[t] for t in tags if t in LID_TAGS), None)


def from_text(text: str) -> str | None:
    """The language the transcript's letters are written in, or None (no letters). Any kana makes
    it Japanese (whose text holds Han characters too); else the script with the most letters."""
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        lang = next((lang for script, lang in _SCRIPTS if name.startswith(script)), None)
        if lang is not None:
            counts[lang] = counts.get(lang, 0) + 1
    if counts.get("ja"):
        return "ja"
    return max(counts, key=counts.get) if counts else None


def most_spoken(found: list[tuple[float, str | None]]) -> str | None:
    """The language of the most seconds among (seconds, language or None) of an input's pieces."""
    seconds: dict[str, float] = {}
    for s, lang in found:
        if lang is not None:
            seconds[lang] = seconds.get(lang, 0.0) + s
    return max(seconds, key=seconds.get) if seconds else None
