"""How well espeak-ng's Mandarin tones can be told apart from what the model hears, before any
model is trained: training.analyse's TONE_SETS (four one-character words a syllable, one a
tone) said alone by training speakers (drawn as the recipe draws them) and by held-out ones,
and a small classifier trained on the training speakers' clips, scored on the held-out ones:

- the tone from a pitch track (the log F0 over the voiced frames, at ten points, its mean
  removed): whether the audio carries the tones;
- the syllable and the tone from the features the encoder is given (SenseVoice's 80-bin fbank,
  7 frames stacked every 6): whether those features carry them as plainly; and the tone again
  from the low 20 mel bins alone, from the other 60 alone, and from all of them with the
  recipe's SpecAugment frequency masks in the classifier's training (where the features carry
  the tone, and whether the masks hide it);
- with --model, the syllable and the tone from that trained model's encoder output (its own
  front end, CMVN included; the query frames left out): whether training kept what the
  features carry, or lost it.

With --variant-pitch-range LO HI, the generated training voices span LO-HI Hz from their lowest
pitch to their highest instead of the recipe's range (wider ranges move espeak-ng's tones more):
whether training voices with plainer tones teach the classifiers the held-out voices' faint ones.

Run:  python -m training.tones [--speakers 150] [--heldout 30] [--model models/demo]
                               [--variant-pitch-range LO HI] [--json FILE]

Needs espeak-ng. About 12 minutes on two cores with the defaults, 15 with --model.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

import numpy as np

from funasr_qwen4b.atomic import write_json_atomic

from . import features, speech
from .analyse import TONE_SETS
from .data import Recipe
from .specaug import SpecAugLFR
from .train import Settings

log = logging.getLogger("training.tones")


def pitch_track(x: np.ndarray, sr: int = speech.SAMPLE_RATE, points: int = 10) -> np.ndarray:
    """log F0 at `points` evenly spaced places over the voiced 10 ms frames (autocorrelation in
    40 ms windows, 55-450 Hz), its mean removed; zeros where fewer than 3 frames are voiced."""
    win, hop = int(0.04 * sr), int(0.01 * sr)
    lo, hi = sr // 450, sr // 55
    peak = np.abs(x).max() if len(x) else 0.0
    logs = []
    for i in range(0, len(x) - win, hop):
        fr = x[i:i + win] - x[i:i + win].mean()
        if np.sqrt(np.mean(fr ** 2)) < 0.05 * peak:
            continue
        ac = np.correlate(fr, fr, "full")[win - 1:]
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.4 * ac[0]:
            logs.append(np.log(sr / k))
    if len(logs) < 3:
        return np.zeros(points)
    y = np.interp(np.linspace(0, len(logs) - 1, points), np.arange(len(logs)), logs)
    return y - y.mean()


def clips(speakers: int, heldout: int, seed: int, model: str | None = None) -> dict:
    """Every TONE_SETS word said by each speaker: features, pitch tracks, tone, set, speaker;
    with `model` (a directory whose `sensevoice/` holds the original files), its encoder's output."""
    import torch

    from funasr_qwen4b.config import FrontendConfig, QueryConfig
    from funasr_qwen4b.reference.encoder import SenseVoiceSmall
    from funasr_qwen4b.reference.frontend import Frontend

    recipe = Recipe()
    r = random.Random(f"{seed}-tones")
    spk = [speech.draw_speaker("zh", r, False, generated=(recipe.generated_voices, recipe.generated_share))
           for _ in range(speakers)] + [speech.draw_speaker("zh", r, True) for _ in range(heldout)]
    frontend = Frontend(FrontendConfig(cmvn=False), None)
    encoder, query = (SenseVoiceSmall.load(f"{model}/sensevoice"), QueryConfig(language="zh")) if model else (None, None)
    out: dict = {"feats": [], "encoded": [], "track": [], "tone": [], "syllable": [], "heldout": []}
    for i, s in enumerate(spk):
        for z, chars in enumerate(TONE_SETS):
            for tone, c in enumerate(chars):
                x = speech.synthesize(f"{c}。", s)
                out["feats"].append(frontend(x).numpy())
                if encoder is not None:
                    with torch.no_grad():
                        f = encoder.frontend(x)[None]
                        enc, _ = encoder.encode(f, torch.tensor([f.shape[1]]), query)
                    out["encoded"].append(enc[0, len(query.ids):].numpy())
                out["track"].append(pitch_track(x))
                out["tone"].append(tone)
                out["syllable"].append(z)
                out["heldout"].append(i >= speakers)
        if (i + 1) % 30 == 0:
            log.info(f"speakers: {i + 1}/{len(spk)}")
    return out


def _fit(model, x, mask, y, train, epochs: int, lr: float, augment=None) -> tuple[float, float]:
    """Train on `train` (each batch through `augment` first, if given), return (training
    accuracy, held-out accuracy)."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr)
    idx = np.flatnonzero(train)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        rng.shuffle(idx)
        for b in range(0, len(idx), 64):
            k = torch.from_numpy(idx[b:b + 64])
            xb = x[k] if augment is None else augment(x[k].clone(), None)[0]
            loss = torch.nn.functional.cross_entropy(model(xb, None if mask is None else mask[k]), y[k])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        hit = (model(x, mask).argmax(1) == y).numpy()
    return float(hit[train].mean()), float(hit[~train].mean())


def _padded(seqs: list[np.ndarray]):
    """Rows normalised over all sequences, zero-padded to the longest, and the mask of real rows."""
    import torch

    rows = np.concatenate(seqs)
    mean, std = rows.mean(0), rows.std(0) + 1e-5
    x = np.zeros((len(seqs), max(len(f) for f in seqs), rows.shape[1]), np.float32)
    mask = np.zeros(x.shape[:2], bool)
    for i, f in enumerate(seqs):
        x[i, :len(f)], mask[i, :len(f)] = (f - mean) / std, True
    return torch.from_numpy(x), torch.from_numpy(mask)


def classify(d: dict, epochs: int = 25) -> dict:
    """(training, held-out) accuracy of each classifier, by what it reads."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)  # the models' first weights
    train = ~np.array(d["heldout"])
    tone, syllable = torch.tensor(d["tone"]), torch.tensor(d["syllable"])

    class Track(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 4))

        def forward(self, x, _):
            return self.net(x)

    track = torch.tensor(np.array(d["track"]), dtype=torch.float32) * 10
    result = {"tone from the pitch track": _fit(Track(), track, None, tone, train, 200, 1e-2)}

    class Frames(nn.Module):  # a bidirectional GRU over the frames, averaged
        def __init__(self, dim: int, classes: int):
            super().__init__()
            self.inp, self.gru = nn.Linear(dim, 128), nn.GRU(128, 128, batch_first=True, bidirectional=True)
            self.out = nn.Linear(256, classes)

        def forward(self, x, m):
            h, _ = self.gru(torch.relu(self.inp(x)))
            return self.out((h * m[..., None]).sum(1) / m.sum(1, keepdim=True))

    for key, what in (("feats", "the features"), ("encoded", "the trained encoder's output")):
        if not d.get(key):
            continue
        x, mask = _padded(d[key])
        for name, y, classes in (("syllable", syllable, len(TONE_SETS)), ("tone", tone, 4)):
            result[f"{name} from {what}"] = _fit(Frames(x.shape[2], classes), x, mask, y, train, epochs, 2e-3)
        if key == "feats" and x.shape[2] == features.DIM:
            # Where the features carry the tone, and whether the recipe's SpecAugment frequency
            # masks (a band of the mel bins zeroed in training) hide it.
            result["tone from the features, trained under the recipe's frequency masks"] = _fit(
                Frames(x.shape[2], 4), x, mask, tone, train, epochs, 2e-3,
                SpecAugLFR(Settings.spec_freq_width, 0))
            bins = np.arange(features.DIM).reshape(-1, 80)  # the 7 stacked frames' 80 mel bins
            for lo, hi in ((0, 20), (20, 80)):
                cols = torch.from_numpy(bins[:, lo:hi].reshape(-1))
                result[f"tone from mel bins {lo}-{hi - 1} of the features"] = _fit(
                    Frames(len(cols), 4), x[:, :, cols], mask, tone, train, epochs, 2e-3)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speakers", type=int, default=150, help="training speakers (default %(default)s)")
    ap.add_argument("--heldout", type=int, default=30, help="held-out speakers (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="also read the tones from this trained model's encoder output "
                                    "(a directory like models/demo)")
    ap.add_argument("--variant-pitch-range", type=int, nargs=2, metavar=("LO", "HI"),
                    help="the generated voices' pitch ranges, in Hz (default: the recipe's, "
                         f"{speech.VARIANT_PITCH_RANGE[0]} {speech.VARIANT_PITCH_RANGE[1]})")
    ap.add_argument("--json", help="write the accuracies here")
    args = ap.parse_args(argv)
    if args.variant_pitch_range:
        lo, hi = args.variant_pitch_range
        if not 0 < lo <= hi:
            ap.error(f"--variant-pitch-range {lo} {hi}: give 0 < LO <= HI")
        speech.VARIANT_PITCH_RANGE = (lo, hi)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.model and not Path(args.model, "sensevoice").is_dir():
        ap.error(f"{args.model}: no sensevoice/ directory here; give a model directory like models/demo")
    d = clips(args.speakers, args.heldout, args.seed, args.model)
    result = classify(d)
    print(f"| {len(TONE_SETS) * 4} words, {args.speakers} training / {args.heldout} held-out speakers "
          "| training speakers | held-out speakers |\n| --- | --- | --- |")
    for name, (seen, unseen) in result.items():
        print(f"| {name} | {100 * seen:.0f} % | {100 * unseen:.0f} % |")
    track, tone = np.array(d["track"]), np.array(d["tone"])
    change = [float(np.median(np.expm1(track[tone == t, -1] - track[tone == t, 0]))) for t in range(4)]
    print("median pitch change over the voiced frames, tones 1-4: "
          + ", ".join(f"{100 * c:+.0f} %" for c in change))
    if args.json:
        write_json_atomic(args.json, {**{k: {"training": a, "heldout": b} for k, (a, b) in result.items()},
                                      "median pitch change, tones 1-4": change})
    return 0


if __name__ == "__main__":
    sys.exit(main())
