"""Train the demonstration model: SenseVoiceSmall (FunASR's class) → adaptor
(our AudioAdaptorQwen4B, post-norm GELU) → Qwen3ForCausalLM (transformers), on
espeak-ng speech, with the reference code; write it in the original formats.

Run:  python -m training.train --out models/demo            # CUDA when there is one (training/RUN.md)
      python -m training.train --out /tmp/demo --quick      # a smoke run (minutes on a CPU)

Losses: FunASR's CTC on the encoder's speech frames, cross-entropy of the CTC
head on the 4 query frames (language, emotion, event, text norm: SenseVoice's
"rich" loss), and the LLM's next-token cross-entropy on the transcript after
the adaptor rows in the `raw` layout ([audio, text, <|im_end|>]), the 4 query
frames kept, as REFERENCE.md §3 describes the real adaptor's training. A clip
with no speech has an empty transcript: no CTC tokens, the LLM says <|im_end|> at
once, and the tags are SenseVoice's <|nospeech|><|EMO_UNKNOWN|><|Event_UNK|>.
Everything that decides the model (data recipe, dimensions, optimiser, seed)
is written into each checkpoint's config.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import corpus, data, wordlists
from .tokenizers import NONSPEECH_TAGS, build_ctc_bpe, build_llm_tokenizer, ctc_text

log = logging.getLogger(__name__)

ENCODER = dict(output_size=256, attention_heads=4, linear_units=512, num_blocks=4, tp_blocks=1, kernel_size=11)
# nhead 8 is the real adaptor's (and `convert adaptor`'s default): no flag needed to convert this one.
ADAPTOR = dict(encoder_dim=256, d_model=128, num_layers=4, dim_feedforward=256, llm_dim=256, nhead=8)
QWEN3 = dict(hidden_size=256, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
             intermediate_size=512)
TAGS = {"zh": "<|zh|>", "en": "<|en|>"}, "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>"
TAGS_NONSPEECH = ("<|nospeech|>", *NONSPEECH_TAGS, "<|woitn|>")
QUERY_LANGUAGES = ("auto", "zh", "en")  # drawn per utterance: the transcript must not depend on the query


@dataclass(frozen=True)
class Settings:
    recipe: data.Recipe = field(default_factory=data.Recipe)
    ctc_vocab: int = 4000  # every character of the training text (about 2700), then BPE merges
    llm_vocab: int = 8000
    epochs: int = 8
    batch_size: int = 128  # a step costs its kernel launches, nearly whatever the batch (training/RUN.md)
    lr: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    rich_weight: float = 0.3
    llm_weight: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(encoder=ENCODER, adaptor=ADAPTOR, qwen3=QWEN3, script="training/train.py",
                 word_lists={**wordlists.SOURCES, "size": wordlists.SIZE, "exponent": corpus.WORD_EXPONENT})
        return d


# --- features ---------------------------------------------------------------

def _features(job: tuple[data.Item, int, data.Recipe]) -> list[np.ndarray]:
    """One clip, synthesised, then each augmented copy through FunASR's fbank + LFR (no CMVN yet:
    its stats come from these). In one worker: the waveforms never cross processes."""
    import torch

    from funasr_qwen4b.config import FrontendConfig
    from reference.frontend import Frontend

    torch.set_num_threads(1)
    item, index, recipe = job
    x, frontend = data.synthesize(item), Frontend(FrontendConfig(cmvn=False), None)
    return [frontend(data.augment(x, recipe, np.random.default_rng([recipe.seed, index, copy]))).numpy()
            for copy in range(recipe.copies)]


def features(clips: list[data.Item], recipe: data.Recipe, workers: int) -> list[list[np.ndarray]]:
    """[clip][copy] → LFR features [T', 560]."""
    out = []
    with ProcessPoolExecutor(workers) as pool:
        for i, f in enumerate(pool.map(_features, [(it, i, recipe) for i, it in enumerate(clips)], chunksize=16)):
            out.append(f)
            if (i + 1) % 5000 == 0:
                log.info(f"espeak-ng and features: {i + 1}/{len(clips)}")
    return out


# --- the model ----------------------------------------------------------------

class DemoModel:
    """The three parts, built with the reference classes."""

    def __init__(self, s: Settings, ctc_vocab: int, llm_vocab: int, tok_ids: dict[str, int], device):
        import torch

        from funasr_qwen4b.config import AdaptorConfig
        from reference.adaptor import AudioAdaptorQwen4B
        from reference.checkpoints import build_sensevoice, config_yaml, qwen3_config
        from transformers import Qwen3ForCausalLM

        torch.manual_seed(s.seed)
        self.sv_cfg = {**config_yaml(ENCODER), "train_conf": s.to_dict()}
        self.sv = build_sensevoice(self.sv_cfg, ctc_vocab).to(device)
        self.adaptor = AudioAdaptorQwen4B(AdaptorConfig(**ADAPTOR)).to(device)
        self.llm_cfg = qwen3_config(llm_vocab, tok_ids["<|endoftext|>"], tok_ids["<|im_end|>"], **QWEN3)
        self.llm_cfg.training = s.to_dict()
        self.llm = Qwen3ForCausalLM(self.llm_cfg).to(device)
        self.device = device

    def modules(self):
        return [self.sv, self.adaptor, self.llm]

    def parameters(self):
        return [p for m in self.modules() for p in m.parameters()]

    def train(self, mode: bool = True):
        for m in self.modules():
            m.train(mode)


def cmvn_stats(feats: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every frame, summed in float64 (no copy of all frames)."""
    count, s1, s2 = 0, np.zeros(560), np.zeros(560)
    for per in feats:
        for f in per:
            count += f.shape[0]
            s1 += f.sum(0, dtype=np.float64)
            s2 += np.square(f, dtype=np.float64).sum(0)
    mean = s1 / count
    return mean, np.sqrt(np.maximum(s2 / count - mean ** 2, 0.0))


@dataclass
class Batch:
    feats: object  # [B, T, 560], CMVN applied
    lengths: object  # [B]
    query: object  # [B, 4] query ids
    ctc_targets: object  # [B, U] padded with -1
    ctc_lengths: object
    tags: object  # [B, 4] CTC-vocabulary ids of the tag frames
    llm_ids: object  # [B, L]: transcript ids + <|im_end|>, padded with 0
    llm_lengths: object  # [B]


def losses(m: DemoModel, b: Batch) -> dict:
    import torch
    import torch.nn.functional as F

    speech = torch.cat((m.sv.embed(b.query), b.feats), dim=1)
    enc, enc_lens = m.sv.encoder(speech, b.lengths + 4)
    ctc = m.sv.ctc(enc[:, 4:], enc_lens - 4, b.ctc_targets, b.ctc_lengths)
    ctc = ctc * len(b.ctc_lengths) / b.ctc_lengths.sum().clamp(min=1)  # per token, like the LLM's loss
    tag_logits = m.sv.ctc.ctc_lo(enc[:, :4])
    rich = F.cross_entropy(tag_logits.reshape(-1, tag_logits.shape[-1]), b.tags.reshape(-1))

    frames = torch.arange(enc.shape[1], device=enc.device)[None] < enc_lens[:, None]
    audio = m.adaptor(enc, mask=frames)
    # Each row: its audio rows, then its transcript shifted right; built with whole-batch index
    # arithmetic (a loop over utterances costs kernel launches per utterance, the step's real cost).
    a, n_ids = enc_lens[:, None], b.llm_lengths[:, None]
    n = int((enc_lens + b.llm_lengths).max()) - 1
    pos = torch.arange(n, device=enc.device)[None]
    last = b.llm_ids.shape[1] - 1
    text_in = torch.gather(b.llm_ids, 1, (pos - a).clamp(0, last))
    is_text = (pos >= a) & (pos < a + n_ids - 1)
    inputs = torch.where((pos < a)[..., None], F.pad(audio, (0, 0, 0, n - audio.shape[1])),
                         torch.where(is_text[..., None], m.llm.get_input_embeddings()(text_in), 0.0))
    labels = torch.gather(b.llm_ids, 1, (pos - a + 1).clamp(0, last))
    labels = labels.masked_fill((pos < a - 1) | (pos >= a - 1 + n_ids), -100)
    mask = (pos < a + n_ids - 1).long()
    logits = m.llm(inputs_embeds=inputs, attention_mask=mask).logits
    llm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    return {"ctc": ctc, "rich": rich, "llm": llm}


# --- the run ----------------------------------------------------------------------

def write_tokenizers(out: Path, s: Settings, train: list[data.Item]):
    """CTC BPE into out/sensevoice, the LLM tokenizer into out/qwen3; returns both."""
    import sentencepiece as spm

    from reference.checkpoints import BPE_NAME

    (out / "sensevoice").mkdir(parents=True, exist_ok=True)
    speech = [it for it in train if it.text]
    ctc_size = build_ctc_bpe(out / "sensevoice" / BPE_NAME, [ctc_text(it.text, it.lang) for it in speech],
                             s.ctc_vocab)
    llm_tok = build_llm_tokenizer([it.text for it in speech], s.llm_vocab)
    llm_tok.save_pretrained(out / "qwen3")
    return spm.SentencePieceProcessor(model_file=str(out / "sensevoice" / BPE_NAME)), ctc_size, llm_tok


def cosine_lr(step: int, total: int, s: Settings) -> float:
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    return s.lr * 0.5 * (1 + math.cos(math.pi * (step - s.warmup_steps) / max(1, total - s.warmup_steps)))


def run(out: Path, s: Settings, device: str, workers: int, max_minutes: float | None = None) -> dict:
    import torch
    from funasr.frontends.wav_frontend import load_cmvn

    from funasr_qwen4b.config import LANGUAGE_IDS, QueryConfig
    from reference.checkpoints import write_am_mvn, write_sensevoice_dir

    t0 = time.time()
    random.seed(s.seed)
    np.random.seed(s.seed)
    _, train = data.items(s.recipe)
    sp, ctc_size, llm_tok = write_tokenizers(out, s, train)
    llm_vocab = -(-len(llm_tok) // 64) * 64
    log.info(f"{len(train)} training clips ({sum(not it.text for it in train)} without speech); CTC vocabulary "
             f"{ctc_size}, LLM vocabulary {len(llm_tok)} (embedding rows {llm_vocab})")

    feats = features(train, s.recipe, workers)
    mean, std = cmvn_stats(feats)
    shift, scale = -mean, 1.0 / np.maximum(std, 1e-5)
    write_am_mvn(out / "sensevoice" / "am.mvn", shift, scale)
    # Train on what inference computes: the CMVN as FunASR reads it back from the am.mvn text.
    cmvn = torch.from_numpy(np.asarray(load_cmvn(str(out / "sensevoice" / "am.mvn")), dtype=np.float32))
    log.info(f"features: {sum(f.shape[0] for per in feats for f in per)} frames from {len(feats)}×{s.recipe.copies} "
             f"copies ({time.time() - t0:.0f} s so far)")

    dev = torch.device(device)
    tok_ids = {t: llm_tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
    m = DemoModel(s, ctc_size, llm_vocab, tok_ids, dev)
    n_params = {k: sum(p.numel() for p in mod.parameters()) for k, mod in
                zip(("sensevoice", "adaptor", "qwen3"), m.modules())}
    log.info(f"parameters: {n_params}")
    cmvn_shift, cmvn_scale = cmvn[0].to(dev), cmvn[1].to(dev)
    tag_ids = {t: sp.piece_to_id(t) for t in (*TAGS[0].values(), *TAGS[1:], *TAGS_NONSPEECH)}
    woitn = QueryConfig(textnorm="woitn").ids[3]

    examples = []
    for i, it in enumerate(train):
        ctc_ids = sp.encode(ctc_text(it.text, it.lang)) if it.text else []
        llm_ids = llm_tok.encode(it.text, add_special_tokens=False) + [tok_ids["<|im_end|>"]]
        tags = [tag_ids[t] for t in ((TAGS[0][it.lang], *TAGS[1:]) if it.text else TAGS_NONSPEECH)]
        for f in feats[i]:
            examples.append((torch.from_numpy(f), ctc_ids, llm_ids, tags))
    del feats

    def batches(epoch_rng: random.Random):
        order = sorted(range(len(examples)), key=lambda k: examples[k][0].shape[0] + epoch_rng.random() * 8)
        chunks = [order[k:k + s.batch_size] for k in range(0, len(order), s.batch_size)]
        epoch_rng.shuffle(chunks)
        for idx in chunks:
            ex = [examples[k] for k in idx]
            T = max(e[0].shape[0] for e in ex)
            U = max(len(e[1]) for e in ex)
            fb = torch.zeros(len(ex), T, 560)
            ct = torch.full((len(ex), U), -1, dtype=torch.long)
            ids = torch.zeros(len(ex), max(len(e[2]) for e in ex), dtype=torch.long)
            for j, e in enumerate(ex):
                fb[j, :e[0].shape[0]] = e[0]
                ct[j, :len(e[1])] = torch.tensor(e[1], dtype=torch.long)
                ids[j, :len(e[2])] = torch.tensor(e[2])
            lengths = torch.tensor([e[0].shape[0] for e in ex])
            fb = fb.to(dev)
            fb = (fb + cmvn_shift) * cmvn_scale * (torch.arange(T, device=dev)[None, :, None] < lengths.to(dev)[:, None, None])
            query = torch.tensor([[LANGUAGE_IDS[epoch_rng.choice(QUERY_LANGUAGES)], *QueryConfig().ids[1:3], woitn]
                                  for _ in ex])
            yield Batch(fb, lengths.to(dev), query.to(dev), ct.to(dev),
                        torch.tensor([len(e[1]) for e in ex]).to(dev),
                        torch.tensor([e[3] for e in ex]).to(dev), ids.to(dev),
                        torch.tensor([len(e[2]) for e in ex]).to(dev))

    params = m.parameters()
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(examples) / s.batch_size)
    total, step = s.epochs * steps_per_epoch, 0
    history = []
    rng = random.Random(s.seed)
    for epoch in range(s.epochs):
        m.train()
        sums, count, t_ep = {"ctc": 0.0, "rich": 0.0, "llm": 0.0}, 0, time.time()
        for b in batches(rng):
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, s)
            parts = losses(m, b)
            loss = parts["ctc"] + s.rich_weight * parts["rich"] + s.llm_weight * parts["llm"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            opt.step()
            step += 1
            count += 1
            for k, v in parts.items():
                sums[k] += v.item()
        row = {"epoch": epoch + 1, **{k: round(v / count, 4) for k, v in sums.items()},
               "seconds": round(time.time() - t_ep, 1)}
        history.append(row)
        log.info(json.dumps(row))
        if max_minutes and epoch + 1 < s.epochs and time.time() - t0 + row["seconds"] > 60 * max_minutes:
            log.info(f"stopping after epoch {epoch + 1}: another would pass --max-minutes {max_minutes}")
            break

    m.train(False)
    write_sensevoice_dir(out / "sensevoice", m.sv.cpu(), m.sv_cfg, shift, scale, bpe=True)
    torch.save({"model_state_dict": m.adaptor.cpu().state_dict(), "config": ADAPTOR,
                "training": s.to_dict()}, out / "adaptor.pt")
    m.llm.cpu().save_pretrained(out / "qwen3")
    summary = {"settings": s.to_dict(), "parameters": n_params, "history": history,
               "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else device,
               "torch": torch.__version__, "minutes": round((time.time() - t0) / 60, 1)}
    (out / "training_log.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", required=True, help="directory for sensevoice/, adaptor.pt, qwen3/ (must not exist)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    ap.add_argument("--seed", type=int, default=0, help="model initialisation and batch order (data has its own)")
    ap.add_argument("--epochs", type=int, default=Settings.epochs)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 100 utterances a language, 2 epochs, 4 clips of each held-out set scored")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for espeak-ng and features")
    ap.add_argument("--max-minutes", type=float, help="stop after the epoch that would pass this much wall time")
    ap.add_argument("--no-eval", action="store_true",
                    help="skip the held-out scores (then: python -m training.evaluate OUT --log)")
    ap.add_argument("--funasr-modules-only", action="store_true",
                    help="import FunASR's model modules without its package __init__ (which imports the whole "
                         "toolkit): for a GPU machine that has torch but not FunASR's many dependencies")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    if args.funasr_modules_only:
        from reference.funasr_modules import import_modules_only

        import_modules_only()
    import torch

    out = Path(args.out)
    if out.exists():
        sys.exit(f"error: {out} exists; give a new --out directory")
    s = Settings(epochs=args.epochs, seed=args.seed)
    if args.quick:
        s = Settings(recipe=data.Recipe(train_per_lang=100), epochs=2, batch_size=16, warmup_steps=5, seed=args.seed)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        run(tmp, s, device, args.workers, max_minutes=args.max_minutes)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(out)
    if not args.no_eval:
        from .evaluate import evaluate, record, summary_line

        result = evaluate(out, limit=4 if args.quick else None)
        record(out, result)
        print(f"{out}: held-out {summary_line(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
