"""Where the demonstration model's errors on the open sets come from, measured (the reference
pipeline on the CPU, from the original files as training.evaluate reads them):

- the LLM's transcript against the CTC head's, per set and per utterance (which of the two is
  worse, and how often the LLM repairs or adds errors);
- the LLM's errors classified, each run of edits between two matching stretches once:
  `same_sound` (espeak-ng gives the reference and the transcript the same phonemes: 是/事,
  sites/sights: no voice tells them apart), `tone_or_stress` (the same phonemes but a tone or a
  stress mark), `word_boundary` (English: the same letters, cut into other words), `number` (a
  run inside a number, time, date or money piece), `end_deletion`, `insertion`, and `other`;
  and how many runs touch a junction of two pieces (the pairs training never heard together);
- the share of tokens wrong by the kind of piece they belong to: a word of one token (a
  one-character word in Mandarin, where only the tone tells many apart), a longer word, and a
  number, time, date or money piece, for the LLM, the CTC head and (Mandarin) the floor below;
- the floor a recognizer that hears no tone starts from (Mandarin): the open sentences with each
  listed word written as the most frequent listed word said with its syllables;
- the listed words (Mandarin: those of two characters or more that the floor writes right) by how
  often the model's training text says them, and how many of each the LLM wrote wrong;
- whether the model hears tones: sets of four one-character words that differ in their tone
  alone (方/房/访/放), each said alone by a training voice at a training speed and pitch;
- the cost of the held-out voices: each sentence spoken again, clean, (a) by the held-out
  speaker (so the noisy clips' noise is measured), (b) by the held-out voice at the nearest
  training speed and pitch, and (c) by a training voice at those, against the committed clips.

Run:  python -m training.analyse models/demo [--json training/analysis.json] [--limit N]

Needs espeak-ng (the re-spoken clips and the phoneme comparisons).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import jiwer

from funasr_qwen4b.manifest import load_manifest
from funasr_qwen4b.text import Counts, cer_text, char_counts, normalize, word_counts

from . import corpus, data, speech
from .evaluate import SETS

OPEN_SETS = ("zh_open", "en_open")
PIECE_KINDS = {"one_token_word": "one-token words", "longer_word": "longer words",
               "number": "numbers, times, dates, money"}
CATEGORIES = ("same_sound", "tone_or_stress", "word_boundary", "number", "end_deletion", "insertion", "other")
CONDITIONS = {
    "committed": "the committed clips (held-out voices, speeds and pitches; the last 10 with noise)",
    "clean": "the same speakers, no noise",
    "training_speed_pitch": "the held-out voice at the nearest training speed and pitch, clean",
    "training_voice": "a training voice at the nearest training speed and pitch, clean",
}
# One-character words of the list, four to a syllable, one to a tone (espeak-ng -x marks each
# with its own), said alone by this training voice: only the tone tells a set's words apart.
TONE_SETS = ("方房访放", "八拔把爸", "汤糖躺烫", "吃迟尺赤", "通同统痛", "鸡急几记", "书熟鼠树")
TONE_SPEAKER = speech.Speaker(f"{speech.ZH_VOICE}+m1", 160, 50)
# espeak-ng's phoneme strings: these characters mark tone (Mandarin) or stress (English).
_TONE_STRESS = str.maketrans("", "", "0123456789',")


@cache
def phonemes(lang: str, text: str) -> str:
    """What espeak-ng's default voice of the language says for `text` (its phoneme mnemonics,
    word separators dropped)."""
    voice = speech.ZH_VOICE if lang == "zh" else "en-us"
    return _said(subprocess.run(["espeak-ng", "-q", "-x", "-v", voice, text], check=True, capture_output=True,
                                text=True).stdout)


def _said(out: str) -> str:
    return "".join(out.replace("_|", "").replace("_", "").split())


def nearest(value: int, choices: list[int]) -> int:
    return min(choices, key=lambda c: (abs(c - value), c))


def respoken(lang: str, spk: speech.Speaker, r: random.Random) -> dict[str, speech.Speaker]:
    """The speakers of the re-spoken conditions for one committed clip's speaker."""
    base, _, _ = spk.voice.partition("+")
    speed, pitch = nearest(spk.speed, speech.SPEEDS), nearest(spk.pitch, speech.PITCHES)
    trained_base = base if lang == "zh" or base in speech.EN_ACCENTS else speech.EN_ACCENTS[0]
    variant = r.choice(speech.VARIANTS)
    return {"clean": spk, "training_speed_pitch": speech.Speaker(spk.voice, speed, pitch),
            "training_voice": speech.Speaker(f"{trained_base}+{variant}" if variant else trained_base, speed, pitch)}


def tokens(lang: str, text: str) -> list[str]:
    return list(cer_text(text)) if lang == "zh" else normalize(text).split()


def junctions(lang: str, parts: list[str]) -> tuple[set[int], set[int]]:
    """Token places (in tokens(lang, sentence)) next to a junction of two pieces, and those inside
    a number, time, date or money piece (one that is neither a listed word nor a domain word)."""
    words = set(corpus._word_table(lang)[0]) | set(corpus.DOMAIN[lang])
    edge, number, at = set(), set(), 0
    for i, p in enumerate(parts):
        n = len(tokens(lang, p))
        if i:
            edge |= {at - 1, at}
        if p not in words:
            number |= set(range(at, at + n))
        at += n
    return edge, number


def piece_kinds(lang: str, parts: list[str]) -> list[str]:
    """The PIECE_KINDS key of each token of the sentence, from the piece it belongs to."""
    words = set(corpus._word_table(lang)[0]) | set(corpus.DOMAIN[lang])
    out: list[str] = []
    for p in parts:
        n = len(tokens(lang, p))
        out += [("one_token_word" if n == 1 else "longer_word") if p in words else "number"] * n
    return out


def token_hits(ref: list[str], hyp: list[str]) -> list[bool]:
    """Whether each reference token is matched in the hypothesis: outside every run of edits."""
    hit = [True] * len(ref)
    for rs, re_, *_ in error_runs(ref, hyp):
        hit[rs:re_] = [False] * (re_ - rs)
    return hit


def error_runs(ref: list[str], hyp: list[str]) -> list[tuple[int, int, int, int, int]]:
    """(ref start, ref end, hyp start, hyp end, edits) of each run of edits between matches
    (jiwer's alignment, as funasr_qwen4b.text counts them)."""
    if not ref:
        return [(0, 0, 0, len(hyp), len(hyp))] if hyp else []
    out = jiwer.process_words(" ".join(ref), " ".join(hyp)) if hyp else None
    if out is None:
        return [(0, len(ref), 0, 0, len(ref))]
    runs, cur = [], None
    for c in out.alignments[0]:
        if c.type == "equal":
            if cur:
                runs.append(tuple(cur))
            cur = None
            continue
        edits = (c.ref_end_idx - c.ref_start_idx) if c.type != "insert" else (c.hyp_end_idx - c.hyp_start_idx)
        if cur is None:
            cur = [c.ref_start_idx, c.ref_end_idx, c.hyp_start_idx, c.hyp_end_idx, edits]
        else:
            cur[1], cur[3], cur[4] = c.ref_end_idx, c.hyp_end_idx, cur[4] + edits
    if cur:
        runs.append(tuple(cur))
    return runs


def classify(lang: str, ref: list[str], hyp: list[str], parts: list[str]) -> list[dict]:
    """Each run of the LLM's edits, with its category and whether it touches a junction."""
    edge, number = junctions(lang, parts)
    sep = "" if lang == "zh" else " "
    out = []
    for rs, re_, hs, he, edits in error_runs(ref, hyp):
        r_text, h_text = sep.join(ref[rs:re_]), sep.join(hyp[hs:he])
        places = set(range(rs, max(re_, rs + 1)))
        if lang == "en" and r_text and h_text and r_text.replace(" ", "") == h_text.replace(" ", ""):
            kind = "word_boundary"
        elif r_text and h_text and phonemes(lang, r_text) == phonemes(lang, h_text):
            kind = "same_sound"
        elif r_text and h_text and phonemes(lang, r_text).translate(_TONE_STRESS) == \
                phonemes(lang, h_text).translate(_TONE_STRESS):
            kind = "tone_or_stress"
        elif places & number and r_text:
            kind = "number"
        elif not h_text and re_ == len(ref):
            kind = "end_deletion"
        elif not r_text:
            kind = "insertion"
        else:
            kind = "other"
        out.append({"ref": r_text, "hyp": h_text, "edits": edits, "kind": kind, "junction": bool(places & edge)})
    return out


def toneless(text: str) -> str:
    """What espeak-ng says for Mandarin `text`, without its tones."""
    return phonemes("zh", text).translate(_TONE_STRESS)


@cache
def toneless_words() -> dict[str, tuple[str, ...]]:
    """The list's Mandarin words by what espeak-ng says for them without tones, each key's words
    most frequent first (the list's order)."""
    words = corpus._word_table("zh")[0]
    # one espeak-ng call for the whole list, not one a word: a sentence, and so a line, a word
    lines = subprocess.run(["espeak-ng", "-q", "-x", "-v", speech.ZH_VOICE], input="".join(f"{w}。\n" for w in words),
                           check=True, capture_output=True, text=True).stdout.splitlines()
    if len(lines) != len(words):
        raise RuntimeError(f"espeak-ng said {len(lines)} lines for {len(words)} words")
    out: dict[str, tuple[str, ...]] = {}
    for w, line in zip(words, lines):
        key = _said(line).translate(_TONE_STRESS)
        out[key] = out.get(key, ()) + (w,)
    return out


def misnamed_words(ref: list[str], hyp: list[str], parts: list[str]) -> list[dict]:
    """The listed Mandarin words of two characters or more that `hyp` writes with as many
    characters, in their own syllables, as no listed word (仔细 as 自吸): each with its edits and
    whether it is the only listed word said so (one that knows the words would have written it)."""
    listed = set(corpus._word_table("zh")[0])
    runs, out, at = error_runs(ref, hyp), [], 0
    for p in parts:
        lo, at = at, at + len(tokens("zh", p))
        hit = [r for r in runs if r[0] < at and r[1] > lo]
        if len(p) < 2 or p not in listed or not hit or any(r[1] - r[0] != r[3] - r[2] for r in hit):
            continue
        w = ref[lo:at]
        for rs, re_, hs, _, _ in hit:
            for k in range(max(rs, lo), min(re_, at)):
                w[k - lo] = hyp[hs + k - rs]
        h = "".join(w)
        if h not in listed and toneless(h) == toneless(p):
            out.append({"ref": p, "hyp": h, "edits": sum(a != b for a, b in zip(p, h)),
                        "only": toneless_words()[toneless(p)] == (p,)})
    return out


def toneless_best(parts: list[str]) -> list[str]:
    """What a listener that hears each Mandarin piece's syllables and where it starts, but no
    tone, writes at best: each listed word as the most frequent listed word said so without
    tones (the open sentences draw words by their frequency, so that one is the likeliest), the
    other pieces (numbers, times, dates, money, domain words) right."""
    listed = set(corpus._word_table("zh")[0])
    return [toneless_words()[toneless(p)][0] if p in listed else p for p in parts]


def listed_words_heard(lang: str, parts: list[str], hits: list[bool]) -> list[tuple[str, bool]]:
    """Each listed word among `parts` (Mandarin: of two characters or more, and one the listener
    without tones writes right, so that its errors are not the tone's) with whether every one of
    its tokens is matched (`hits`, token_hits')."""
    listed = set(corpus._word_table(lang)[0])
    best = toneless_best(parts) if lang == "zh" else parts
    out, at = [], 0
    for p, b in zip(parts, best):
        lo, at = at, at + len(tokens(lang, p))
        if p in listed and b == p and (lang == "en" or len(p) > 1):
            out.append((p, all(hits[lo:at])))
    return out


# Lower bounds of the bins of how often the training text says a word; the last is open above.
EXPOSURE_BINS = (0, 40, 80, 160, 400)


def by_exposure(lang: str, heard: list[tuple[str, bool]], train: list[str]) -> list[dict]:
    """`heard` (listed_words_heard's) by how often the training sentences `train` say each word
    (Mandarin: its characters anywhere in a sentence, as the audio says them; English: the word),
    per EXPOSURE_BINS bin: the words and how many of them were wrong."""
    if lang == "zh":
        text = "\n".join(train)
        said = text.count
    else:  # every listed English word is one token
        counts = Counter(t for s in train for t in tokens(lang, s))
        said = lambda w: counts[tokens(lang, w)[0]]  # noqa: E731
    rows = [{"from": lo, "to": hi, "words": 0, "wrong": 0}
            for lo, hi in zip(EXPOSURE_BINS, (*EXPOSURE_BINS[1:], None))]
    for w, right in heard:
        n = said(w)
        row = next(r for r in reversed(rows) if n >= r["from"])
        row["words"] += 1
        row["wrong"] += not right
    return rows


def training_recipe(model_dir: Path) -> data.Recipe | None:
    """The recipe the model's training text was drawn with, from its training_log.json; None
    without one, or when it lacks a field of this trainer's recipe (a model of an older trainer,
    whose text this code may no longer draw)."""
    log = model_dir / "training_log.json"
    if not log.is_file():
        return None
    # a model trained before the recipe had its own word exponent drew at the held-out sets'
    rec = {"word_exponent": corpus.WORD_EXPONENT, **json.loads(log.read_text(encoding="utf-8"))["settings"]["recipe"]}
    try:
        return data.Recipe.from_dict(rec)
    except ValueError:
        return None


def score(lang: str, ref: str, hyp: str) -> Counts:
    return char_counts(ref, hyp) if lang == "zh" else word_counts(ref, hyp)


def tone_probe(pipe) -> dict:
    """TONE_SETS' words said alone: what the LLM and the CTC head write for each."""
    sets = [{"words": chars, **{path: [] for path in ("llm", "ctc")}} for chars in TONE_SETS]
    for row in sets:
        for c in row["words"]:
            o = pipe.run(speech.synthesize(f"{c}。", TONE_SPEAKER))
            row["llm"].append(cer_text(o.text))
            row["ctc"].append(cer_text(o.ctc.text))
    n = sum(len(r["words"]) for r in sets)
    right = {path: sum(h == c for r in sets for c, h in zip(r["words"], r[path])) for path in ("llm", "ctc")}
    return {"speaker": TONE_SPEAKER.to_dict(), "words": n, "llm_right": right["llm"], "ctc_right": right["ctc"],
            "sets": sets}


def analyse(model_dir: str | Path, limit: int | None = None) -> dict:
    from funasr_qwen4b.reference.pipeline import Pipeline

    from funasr_qwen4b.audio import load_audio
    from funasr_qwen4b.config import QueryConfig

    d = Path(model_dir)
    pipe = Pipeline.from_originals(d / "sensevoice", QueryConfig(language="zh"), adaptor=d / "adaptor.pt",
                                   llm=d / "qwen3")
    recipe = data.Recipe()
    trained = training_recipe(d)
    train_texts = data.texts(trained) if trained else None
    exclude = data.committed_texts()
    result: dict = {"model": str(model_dir), "pipeline": "reference (PyTorch, float32), CPU", "unit": {}, "sets": {},
                    "tones": tone_probe(pipe)}
    for name in OPEN_SETS:
        lang = name[:2]
        result["unit"][name] = "characters" if lang == "zh" else "words"
        old = corpus.heldout(lang, recipe.heldout_per_lang, recipe.seed, exclude)
        compositions, _ = corpus.open_pieces(lang, recipe.open_per_lang, recipe.seed, data.OPEN_PROBE_SHARES,
                                             exclude=exclude | set(old))
        entries = load_manifest(SETS[name] / "test.jsonl")[:limit]
        rows = [json.loads(line) for line in (SETS[name] / "test.jsonl").read_text(encoding="utf-8").splitlines()]
        r = random.Random(f"{recipe.seed}-{lang}-analyse")
        totals = {c: {"llm": Counts(), "ctc": Counts()} for c in CONDITIONS}
        noisy = {"clean": {"llm": Counts(), "ctc": Counts()}, "noise": {"llm": Counts(), "ctc": Counts()}}
        by_voice: dict[str, Counts] = {}
        kinds = {k: {"runs": 0, "edits": 0} for k in CATEGORIES}
        junction_runs, runs_total, edge_tokens, ref_tokens = 0, 0, 0, 0
        compare = {"llm_better": 0, "ctc_better": 0, "same": 0}
        paths = ("llm", "ctc", "floor") if lang == "zh" else ("llm", "ctc")  # the floor is Mandarin's
        by_piece = {k: {"tokens": 0, **{f"{p}_wrong": 0 for p in paths}} for k in PIECE_KINDS}
        utterances, misnamed, floor, heard = [], [], Counts(), []
        for e, row, parts in zip(entries, rows, compositions):
            if corpus.join(lang, parts) != e.text:
                raise ValueError(f"{name}/{e.id}: the recipe's open sentence is not the committed one")
            spk = speech.Speaker(row["voice"], row["speed"], row["pitch"])
            outs = {"committed": pipe.run(load_audio(e.audio))}
            for cond, s in respoken(lang, spk, r).items():
                if cond == "clean" and row["condition"] == "clean":
                    outs[cond] = outs["committed"]  # the committed clip is this speaker's clean speech
                else:
                    outs[cond] = pipe.run(speech.synthesize(e.text, s))
            for cond, o in outs.items():
                totals[cond]["llm"] += score(lang, e.text, o.text)
                totals[cond]["ctc"] += score(lang, e.text, o.ctc.text)
            o = outs["committed"]
            llm, ctc = score(lang, e.text, o.text), score(lang, e.text, o.ctc.text)
            noisy[row["condition"]]["llm"] += llm
            noisy[row["condition"]]["ctc"] += ctc
            variant = row["voice"].partition("+")[2] or "(none)"
            by_voice[variant] = by_voice.get(variant, Counts()) + llm
            compare["llm_better" if llm.errors < ctc.errors else "ctc_better" if ctc.errors < llm.errors else "same"] += 1
            ref = tokens(lang, e.text)
            edge, _ = junctions(lang, parts)
            edge_tokens, ref_tokens = edge_tokens + len(edge & set(range(len(ref)))), ref_tokens + len(ref)
            kinds_of = piece_kinds(lang, parts)
            if len(kinds_of) != len(ref):
                raise ValueError(f"{name}/{e.id}: its pieces hold {len(kinds_of)} tokens, the sentence {len(ref)}")
            floor_text = corpus.join(lang, toneless_best(parts)) if lang == "zh" else ""
            texts = {"llm": o.text, "ctc": o.ctc.text, "floor": floor_text}
            for path in paths:
                for kind, hit in zip(kinds_of, token_hits(ref, tokens(lang, texts[path]))):
                    by_piece[kind][f"{path}_wrong"] += not hit
            for kind in kinds_of:
                by_piece[kind]["tokens"] += 1
            heard += listed_words_heard(lang, parts, token_hits(ref, tokens(lang, o.text)))
            runs = classify(lang, ref, tokens(lang, o.text), parts)
            if lang == "zh":
                misnamed += misnamed_words(ref, tokens(lang, o.text), parts)
                floor += score(lang, e.text, floor_text)
            for run in runs:
                kinds[run["kind"]]["runs"] += 1
                kinds[run["kind"]]["edits"] += run["edits"]
                junction_runs += run["junction"]
            runs_total += len(runs)
            utterances.append({"id": e.id, "voice": row["voice"], "speed": row["speed"], "pitch": row["pitch"],
                               "condition": row["condition"], "ref": e.text, "pieces": parts,
                               **{f"{c}_llm": outs[c].text for c in CONDITIONS}, "committed_ctc": o.ctc.text,
                               "errors": runs})
        result["sets"][name] = {
            "utterances": len(entries),
            "conditions": {c: {"llm": totals[c]["llm"].rate, "ctc": totals[c]["ctc"].rate} for c in CONDITIONS},
            "noise": {k: {"llm": v["llm"].rate, "ctc": v["ctc"].rate, "ref": v["llm"].ref} for k, v in noisy.items()},
            "llm_vs_ctc": compare,
            "llm_errors": {"edits": sum(k["edits"] for k in kinds.values()), "runs": runs_total, "kinds": kinds,
                           "runs_at_junction": junction_runs,
                           "tokens_at_junction_share": edge_tokens / max(1, ref_tokens)},
            "by_piece": by_piece,
            "misnamed_words": misnamed,
            "toneless_best": floor.rate if lang == "zh" else None,
            "by_exposure": by_exposure(lang, heard, train_texts[lang]["train"]) if train_texts else None,
            "by_voice": {v: {"rate": c.rate, "ref": c.ref} for v, c in sorted(by_voice.items())},
            "utterance_rows": utterances,
        }
    return result


def table(result: dict) -> str:
    """The breakdown as the model card's Markdown table."""
    sets = result["sets"]
    head = "| | " + " | ".join(f"{n} ({'CER' if n.startswith('zh') else 'WER'})" for n in sets) + " |"
    lines = [head, "| --- |" + " --- |" * len(sets)]

    def row(label: str, cells) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    pct = lambda x: f"{100 * x:.1f} %"
    row("LLM, committed clips", [pct(s["conditions"]["committed"]["llm"]) for s in sets.values()])
    row("CTC head, committed clips", [pct(s["conditions"]["committed"]["ctc"]) for s in sets.values()])
    row("utterances LLM better / CTC better / same",
        [f"{s['llm_vs_ctc']['llm_better']} / {s['llm_vs_ctc']['ctc_better']} / {s['llm_vs_ctc']['same']}"
         for s in sets.values()])
    row("LLM, clean clips (first 50) / noisy (last 10, 20 dB)",
        [f"{pct(s['noise']['clean']['llm'])} / {pct(s['noise']['noise']['llm'])}" for s in sets.values()])
    for c in ("clean", "training_speed_pitch", "training_voice"):
        row(f"LLM, re-spoken: {CONDITIONS[c]}", [pct(s["conditions"][c]["llm"]) for s in sets.values()])
        row(f"CTC head, re-spoken: {CONDITIONS[c]}", [pct(s["conditions"][c]["ctc"]) for s in sets.values()])
    for k in CATEGORIES:
        row(f"LLM errors: {k.replace('_', ' ')} (edits, share)",
            [f"{s['llm_errors']['kinds'][k]['edits']} ({100 * s['llm_errors']['kinds'][k]['edits'] / max(1, s['llm_errors']['edits']):.0f} %)"
             for s in sets.values()])
    row("error runs touching a junction of two pieces (tokens next to one)",
        [f"{100 * s['llm_errors']['runs_at_junction'] / max(1, s['llm_errors']['runs']):.0f} % "
         f"({100 * s['llm_errors']['tokens_at_junction_share']:.0f} %)" for s in sets.values()])
    t = result["tones"]
    row(f"one-character words said alone, {len(TONE_SETS)} sets of four tones: LLM / CTC head right",
        [f"{t['llm_right']} / {t['ctc_right']} of {t['words']}" if n.startswith("zh") else "—" for n in sets])

    def misnamed(s: dict, n: str) -> str:
        if not n.startswith("zh"):
            return "—"
        only = [w for w in s["misnamed_words"] if w["only"]]
        return (f"{len(s['misnamed_words'])} ({sum(w['edits'] for w in s['misnamed_words'])} characters); "
                f"{len(only)} ({sum(w['edits'] for w in only)})")

    row("longer words written as no listed word in their own syllables (wrong characters); "
        "those the only listed word said so", [misnamed(s, n) for n, s in sets.items()])
    row("at best without tones: each listed word written as its most frequent namesake, the rest right",
        [pct(s["toneless_best"]) if n.startswith("zh") else "—" for n, s in sets.items()])

    def exposure(s: dict) -> str:
        if s["by_exposure"] is None:
            return "—"
        return ", ".join(f"{b['wrong']}/{b['words']}" for b in s["by_exposure"])

    bins = ", ".join(f"{lo}–{hi - 1}" if hi else f"{lo}+" for lo, hi in zip(EXPOSURE_BINS, (*EXPOSURE_BINS[1:], None)))
    row(f"listed words (Mandarin: longer, written right without tones) wrong / in the set, by the times the "
        f"training text says them ({bins}; — : its training log names no recipe of this trainer)",
        [exposure(s) for s in sets.values()])
    for k, label in PIECE_KINDS.items():
        row(f"tokens wrong in {label}: LLM / CTC head / at best without tones (tokens)",
            [" / ".join(pct(b[f"{x}_wrong"] / max(1, b["tokens"])) if f"{x}_wrong" in b else "—"
                        for x in ("llm", "ctc", "floor")) + f" ({b['tokens']})"
             for b in (s["by_piece"][k] for s in sets.values())])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--json", default="training/analysis.json", help="the full result (default %(default)s)")
    ap.add_argument("--limit", type=int, help="the first N utterances of each set only")
    args = ap.parse_args(argv)
    result = analyse(args.model_dir, args.limit)
    Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
