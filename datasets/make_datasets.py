"""Generate the synthetic CER test sets datasets/zh_synth/ and datasets/en_synth/ (reproducible).

Run:  python datasets/make_datasets.py            # both sets
      python datasets/make_datasets.py --check    # regenerate in memory, compare with the committed files

Needs espeak-ng on PATH (apt: espeak-ng) plus numpy, soundfile, soxr. Tests never need it:
the WAVs and manifests are committed. Audio was generated with eSpeak NG 1.51; another
version may differ slightly (`--check` says whether it does).

Each set is a directory of 16 kHz mono int16 WAVs plus test.jsonl, one line per utterance:
{"id", "audio" (path relative to the manifest), "text", "lang", "voice", "speed", "condition"}.

What is in them: sentences spoken by espeak-ng at a few voices (variants), speeds and pitches;
a few degraded copies (white noise at a fixed SNR, long leading/trailing silence, hard
clipping); and, in zh_synth, one long file (>= 60 s: sentences separated by pauses).
Noise comes from a seeded generator, so every rerun writes the same bytes.

These sets exist to exercise the CER harness and to compare the MLX port with the
reference transcript for transcript; synthetic speech makes no accuracy claim about real speech.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from training import speech  # espeak-ng → 16 kHz float32, noise, int16: one implementation

ROOT = Path(__file__).resolve().parent
SAMPLE_RATE = 16000
SEED = 20240515
# espeak-ng 1.51's plain `cmn` voice reads its pinyin dictionary through English rules;
# cmn-latn-pinyin is the Mandarin voice that actually speaks Mandarin (see make_clips.py).
ZH = speech.ZH_VOICE


@dataclass(frozen=True)
class Utt:
    id: str
    voice: str  # espeak-ng voice, optionally +variant
    text: str
    speed: int = 175  # words per minute
    pitch: int = 50
    condition: str = "clean"  # clean | noise | silence | clipping | long
    snr_db: float = 10.0  # for noise
    pad_s: float = 1.5  # for silence: leading and trailing seconds
    gain: float = 4.0  # for clipping: gain before hard clipping at full scale


ZH_SET = [
    Utt("zh_open_hours", ZH, "开放时间：早上九点至下午五点"),
    Utt("zh_open_hours_slow_f", f"{ZH}+f2", "开放时间：早上九点至下午五点", speed=140, pitch=65),
    Utt("zh_weather_fast", ZH, "今天天气晴朗，有微风。", speed=220),
    Utt("zh_meeting_m", f"{ZH}+m3", "会议室在十二楼，有四十八个座位。", speed=160, pitch=40),
    Utt("zh_window_noise", ZH, "请在三号窗口办理手续。", condition="noise", snr_db=10.0),
    Utt("zh_meeting_silence", ZH, "明天上午十点开会。", condition="silence"),
    Utt("zh_train_clipped", f"{ZH}+f4", "火车将于八点半到达北京。", condition="clipping"),
]
ZH_LONG_SENTENCES = [
    "开放时间：早上九点至下午五点。", "今天是三月十五日，星期五。", "现在是下午三点二十分。",
    "会议室在十二楼，有四十八个座位。", "请在三号窗口办理手续。", "火车将于八点半到达北京。",
    "明天上午十点开会。", "图书馆周一闭馆。", "请保持安静。", "谢谢大家。",
]
ZH_LONG_PAUSE_S = 4.0  # low-complexity speech: each sentence, then this much silence
ZH_LONG_MIN_S = 60.0

EN_SET = [
    Utt("en_weather", "en-us", "The weather today is sunny with a light breeze."),
    Utt("en_open_hours_gb_slow", "en-gb", "Open from nine in the morning to five in the afternoon.", speed=140),
    Utt("en_call_back_f_fast", "en-us+f3", "Please call me back at three fifteen.", speed=220, pitch=65),
    Utt("en_platform_noise", "en-us+m3", "The train leaves from platform four.", condition="noise", snr_db=10.0),
    Utt("en_waiting_silence", "en-gb", "Thank you for waiting.", condition="silence"),
    Utt("en_corner_clipped", "en-us", "Turn left at the next corner.", condition="clipping"),
]


def synthesize(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng → float32 at 16 kHz (the demonstration model's data uses the same function)."""
    return speech.synthesize(text, speech.Speaker(voice, speed, pitch))


def degrade(x: np.ndarray, u: Utt, rng: np.random.Generator) -> np.ndarray:
    if u.condition == "noise":
        return speech.add_noise(x, u.snr_db, rng)
    if u.condition == "silence":
        pad = np.zeros(int(u.pad_s * SAMPLE_RATE), np.float32)
        return np.concatenate([pad, x, pad])
    if u.condition == "clipping":
        return np.clip(x * u.gain, -1.0, 1.0).astype(np.float32)
    return x


def zh_long() -> tuple[Utt, np.ndarray]:
    pause = np.zeros(int(ZH_LONG_PAUSE_S * SAMPLE_RATE), np.float32)
    parts, spoken, n = [], [], 0
    while n < ZH_LONG_MIN_S * SAMPLE_RATE:
        s = ZH_LONG_SENTENCES[len(spoken) % len(ZH_LONG_SENTENCES)]
        x = synthesize(s, ZH, 175, 50)
        parts += [x, pause]
        spoken.append(s)
        n += x.size + pause.size
    u = Utt("zh_long_pauses", ZH, "".join(spoken), condition="long")
    return u, np.concatenate(parts)


def build(name: str) -> list[tuple[Utt, np.ndarray]]:
    rng = np.random.default_rng(SEED + (0 if name == "zh_synth" else 1))
    utts = ZH_SET if name == "zh_synth" else EN_SET
    out = [(u, speech.to_int16(degrade(synthesize(u.text, u.voice, u.speed, u.pitch), u, rng))) for u in utts]
    if name == "zh_synth":
        u, x = zh_long()
        out.append((u, speech.to_int16(x)))
    return out


def manifest_line(u: Utt, lang: str) -> dict:
    return {"id": u.id, "audio": f"{u.id}.wav", "text": u.text, "lang": lang, "voice": u.voice,
            "speed": u.speed, "condition": u.condition}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["zh_synth", "en_synth"], help="one set only")
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    print(version.stdout.strip(), file=sys.stderr)
    differ = 0
    for name in [args.only] if args.only else ["zh_synth", "en_synth"]:
        out_dir, lang = ROOT / name, name[:2]
        out_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for u, pcm in build(name):
            path = out_dir / f"{u.id}.wav"
            if args.check:
                old = sf.read(str(path), dtype="int16")[0] if path.is_file() else None
                same = old is not None and old.shape == pcm.shape and np.array_equal(old, pcm)
                differ += not same
                print(f"{'same' if same else 'DIFFERS'}: {path}", file=sys.stderr)
            else:
                sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16")
                print(f"wrote {path} ({pcm.size / SAMPLE_RATE:.2f} s, {path.stat().st_size} bytes)", file=sys.stderr)
            lines.append(manifest_line(u, lang))
        text = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
        manifest = out_dir / "test.jsonl"
        if args.check:
            same = manifest.is_file() and manifest.read_text(encoding="utf-8") == text
            differ += not same
            print(f"{'same' if same else 'DIFFERS'}: {manifest}", file=sys.stderr)
        else:
            manifest.write_text(text, encoding="utf-8")
            print(f"wrote {manifest} ({len(lines)} utterances)", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
