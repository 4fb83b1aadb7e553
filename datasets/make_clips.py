"""Generate the small synthetic test clips in datasets/clips/ (reproducible).

Run:  python datasets/make_clips.py
Needs espeak-ng on PATH (apt: espeak-ng) plus numpy, soundfile, soxr.
Clips were generated with eSpeak NG 1.51; another version may differ slightly.

Writes 16 kHz mono int16 WAVs and clips.jsonl, one line per clip:
{"id", "audio" (path relative to the jsonl), "text", "lang"}.
These clips exist for reference-vs-MLX parity, not for accuracy claims:
synthetic speech only needs to be deterministic and speech-like.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from training import speech  # espeak-ng → 16 kHz float32, int16: one implementation

OUT_DIR = Path(__file__).resolve().parent / "clips"
SAMPLE_RATE = 16000
# Fixed espeak-ng options so reruns give the same audio.
SPEED_WPM = 175
PITCH = 50
# espeak-ng 1.51's plain `cmn` voice reads its dictionary's pinyin-with-tone-digits
# through English rules ("kai one"); cmn-latn-pinyin is the same Mandarin voice
# but reads that pinyin as Mandarin, so it produces actual Mandarin speech.
ZH_VOICE = "cmn-latn-pinyin"
EN_VOICE = "en-us"

# (id, voice, lang, text, target seconds or None)
CLIPS = [
    ("zh_open_hours", ZH_VOICE, "zh", "开放时间：早上九点至下午五点", None),
    ("en_weather", EN_VOICE, "en", "The weather today is sunny with a light breeze.", None),
    # ~9.97 s of speech at 175 wpm, padded with trailing silence to exactly 10 s.
    ("zh_10s", ZH_VOICE, "zh",
     "今天是三月十五日，星期五，现在是下午三点二十分。会议室在十二楼，有四十八个座位。", 10.0),
]


def make_clip(text: str, voice: str, target_s: float | None) -> np.ndarray:
    data = speech.synthesize(text, speech.Speaker(voice, SPEED_WPM, PITCH))
    if target_s is not None:
        n = int(round(target_s * SAMPLE_RATE))
        if len(data) > n + SAMPLE_RATE // 2:
            sys.exit(f"speech is {len(data) / SAMPLE_RATE:.2f} s, too long for {target_s} s; shorten the text")
        data = np.pad(data, (0, max(0, n - len(data))))
    return speech.to_int16(data)  # resampling can overshoot full scale by a hair: clipped


def main() -> None:
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    print(version.stdout.strip())
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    lines = []
    for clip_id, voice, lang, text, target_s in CLIPS:
        pcm = make_clip(text, voice, target_s)
        path = OUT_DIR / f"{clip_id}.wav"
        sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16")
        print(f"wrote {path} ({len(pcm) / SAMPLE_RATE:.2f} s, {path.stat().st_size} bytes)")
        lines.append({"id": clip_id, "audio": path.name, "text": text, "lang": lang})
    manifest = OUT_DIR / "clips.jsonl"
    manifest.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    print(f"wrote {manifest} ({len(lines)} clips)")


if __name__ == "__main__":
    main()
