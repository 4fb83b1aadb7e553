"""The word lists the demonstration model's broad text is drawn from, with frequencies.

- Mandarin: jieba 0.42.1's dict.txt (word, count, part of speech); words of 1-4 characters,
  every character among GB2312's 3755 level-1 (common) characters, which espeak-ng's
  Mandarin voice reads one syllable each; no person names (jieba's nr* tags).
- English: wordfreq 3.1.1's English list (Robyn Speer et al.; its data is CC BY-SA 4.0);
  lower-case letters with at most one inner apostrophe ("don't"), at least one vowel
  (vowel-less tokens are abbreviations espeak-ng spells out), single letters only "a" and "i".

Both drop a short list of obscenities and slurs: these words end up in committed test sets.
The lists are committed (training/words/*.tsv: word, count) so the recipe needs neither
package on a training machine; `python -m training.wordlists --check` rebuilds them from
the installed packages (`pip install jieba==0.42.1 wordfreq==3.1.1`) and compares.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import lru_cache
from pathlib import Path

WORDS_DIR = Path(__file__).resolve().parent / "words"
SIZE = 10000  # words kept per language, most frequent first: enough draws to hear each a few times
SOURCES = {"zh": "jieba 0.42.1 dict.txt (MIT licence)",
           "en": "wordfreq 3.1.1 top_n_list('en') (data: Robyn Speer et al., CC BY-SA 4.0), counts per 10^9 words"}

_ZH_BLOCK = {"他妈的", "奸淫", "淫", "妓", "妓女", "妓院", "阴道", "阴茎", "屁"}
_EN_BLOCK_PREFIX = ("fuck", "motherfuck", "shit", "bullshit", "bitch", "cunt", "nigg", "fagg", "slut", "whore",
                    "porn", "dildo", "blowjob", "masturbat", "asshole", "orgasm")
_EN_BLOCK = {"fag", "pussy", "dick", "dicks", "cock", "cocks", "cocky", "tits", "boob", "boobs", "cum", "horny",
             "milf", "twat", "retard", "retarded", "rape", "raped", "rapes", "rapist", "prick", "scumbag", "dyke",
             "homo", "arse", "shite", "goddamn", "piss", "pissed", "pisses", "pissing", "crap", "crappy", "douche",
             "hooker", "penis", "vagina", "vaginal", "semen", "sperm", "erection", "nude", "naked", "sexy",
             "fetish", "kinky", "stripper"}
_EN_WORD = re.compile(r"[a-z]+('[a-z]+)?")


def common_hanzi(ch: str) -> bool:
    """One of GB2312's level-1 characters (lead byte 0xB0-0xD7): the 3755 in common use."""
    try:
        b = ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(b) == 2 and 0xB0 <= b[0] <= 0xD7


def build_zh() -> list[tuple[str, int]]:
    import jieba

    rows = []
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as f:
        for line in f:
            word, count, pos = line.split()
            if (len(word) <= 4 and all(common_hanzi(c) for c in word) and not pos.startswith("nr")
                    and word not in _ZH_BLOCK):
                rows.append((word, int(count)))
    return sorted(rows, key=lambda r: (-r[1], r[0]))[:SIZE]


def build_en() -> list[tuple[str, int]]:
    from wordfreq import top_n_list, word_frequency

    rows = []
    for word in top_n_list("en", 3 * SIZE):
        if (_EN_WORD.fullmatch(word) and re.search("[aeiouy]", word) and (len(word) > 1 or word in "ai")
                and word not in _EN_BLOCK and not word.startswith(_EN_BLOCK_PREFIX)):
            rows.append((word, round(word_frequency(word, "en") * 1e9)))
    return sorted(rows, key=lambda r: (-r[1], r[0]))[:SIZE]


def tsv(rows: list[tuple[str, int]], lang: str) -> str:
    return f"# {SOURCES[lang]}; built by training/wordlists.py\n" + "".join(f"{w}\t{c}\n" for w, c in rows)


@lru_cache(maxsize=None)
def load(lang: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(words, counts) of the committed list, most frequent first."""
    rows = [line.split("\t") for line in (WORDS_DIR / f"{lang}.tsv").read_text(encoding="utf-8").splitlines()
            if not line.startswith("#")]
    return tuple(w for w, _ in rows), tuple(int(c) for _, c in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write (or --check) training/words/{zh,en}.tsv from jieba and wordfreq.")
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    differ = 0
    for lang, build in (("zh", build_zh), ("en", build_en)):
        path, text = WORDS_DIR / f"{lang}.tsv", tsv(build(), lang)
        if args.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == text
            differ += not same
            print(f"{path.name}: {'identical' if same else 'differs'}")
        else:
            WORDS_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
