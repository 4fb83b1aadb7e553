"""Train the demonstration model: SenseVoiceSmall (FunASR's class) → adaptor
(our AudioAdaptorQwen4B, post-norm GELU) → Qwen3ForCausalLM (transformers), on
espeak-ng speech, with the reference code; write it in the original formats.

Run:  python -m training.train --out models/demo            # CUDA when there is one (training/RUN.md)
      python -m training.train --out /tmp/demo --quick      # a smoke run (minutes on a CPU)
      python -m training.train --out /tmp/demo --pause-after-minutes 9      # train 9 minutes, then
      python -m training.train --out /tmp/demo --resume /tmp/demo.work/checkpoint.pt   # the rest
      python -m training.train --out /tmp/demo2 --init /tmp/demo --lr 1e-3 --seed 1   # a new schedule
                                                    # from a trained model's weights

Losses: FunASR's CTC on the encoder's speech frames, cross-entropy of the CTC
head on the 4 query frames (language, emotion, event, text norm: SenseVoice's
"rich" loss), and the LLM's next-token cross-entropy on the transcript after
the adaptor rows in the `raw` layout ([audio, text, <|im_end|>]), the 4 query
frames kept, as the real adaptor was trained (docs/model.md). A clip
with no speech has an empty transcript: no CTC tokens, the LLM says <|im_end|> at
once, and the tags are SenseVoice's <|nospeech|><|EMO_UNKNOWN|><|Event_UNK|>.
Everything that decides the model (data recipe, dimensions, optimiser, seed)
is written into each checkpoint's config.

Data: the features are made by worker processes into a cache on disk (training/features.py):
a first share of the clips before training starts, the rest while training runs. Schedule:
Settings.early_epochs over the first share, then Settings.epochs over all (the first of them
waits for the rest to be made); linear warm-up, then cosine decay over every step of both.
--fit-minutes instead fits the steps to the time after epoch 2, and trains each epoch from
then on over the clips made by its start: the rest join as they are written, none is waited
for, and the data a run sees grows with the time it has.

Pausing: --pause-after-minutes (or --pause-after-epochs, --pause-after-steps) stops after the
last step that fits (or that epoch, or that step), wherever in an epoch, and saves a full
checkpoint (weights, optimiser, step, where in its epoch, every random state, the loss history)
in the work directory (OUT.work unless --work), beside the tokenizers and the feature cache.
--resume continues the same schedule on the same data: the weights are an uninterrupted run's
(bitwise on the CPU, tests/test_training.py; a fitted schedule's epochs take the clips made by
then, which depends on the machine's speed). Given --fit-minutes too, a resumed fitted run
refits: after its first REFIT_AFTER_STEPS steps, and again after each further REFIT_AFTER_STEPS,
the rest of the cosine, from where it stands, is stretched or shrunk over the steps that fit its
time at the rate of its steps so far (a call whose machine no longer makes features steps faster
than the one that fitted; one still making them may slow down). --max-minutes instead writes the model after the
last step that fits (the cosine is then near its end, and the log says how near) and keeps a
checkpoint, so a later --resume can still finish the schedule. A step fits when this process's
mean step would end before the limit; the checkpoint's writing comes after it, so a caller with
a hard deadline gives a limit short of it. Under either, an epoch of the unfitted schedule that
needs clips still being made waits for them only while it would still fit; otherwise the run
stops there and the one that resumes makes the rest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from concurrent import futures
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from funasr_qwen4b.atomic import write_atomic

from . import corpus, data, features, tonal, wordlists
from .cli import add_modules_only_option, apply_modules_only_option
from .profile import StepProfile
from .tokenizers import NONSPEECH_TAGS, build_ctc_bpe, build_llm_tokenizer, ctc_text

log = logging.getLogger(__name__)

# Wider and deeper than the first model's encoder (FFN 512, 4 blocks): a step costs its kernel
# launches (training/RUN.md): width adds none, a block about 6 % of a step's operations.
ENCODER = dict(output_size=256, attention_heads=4, linear_units=768, num_blocks=6, tp_blocks=1, kernel_size=11)
# nhead 8 is the real adaptor's (and `convert adaptor`'s default): no flag needed to convert this one.
ADAPTOR = dict(encoder_dim=256, d_model=128, num_layers=4, dim_feedforward=256, llm_dim=256, nhead=8)
# Six layers, twice the earlier three: the open sets' Mandarin errors are the LLM's choice of word
# from syllables whose tones it barely hears (training/RUN.md); about 7 MB more, under 50 MB in all.
QWEN3 = dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
             intermediate_size=512)
TAGS = {"zh": "<|zh|>", "en": "<|en|>"}, "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>"
TAGS_NONSPEECH = ("<|nospeech|>", *NONSPEECH_TAGS, "<|woitn|>")
QUERY_LANGUAGES = ("auto", "zh", "en")  # drawn per utterance: the transcript must not depend on the query
CHECKPOINT = "checkpoint.pt"
PARTS = ("sensevoice", "adaptor", "qwen3")  # DemoModel.modules(), in order
LOSSES = ("ctc", "rich", "llm", "tone")


@dataclass(frozen=True)
class Settings:
    recipe: data.Recipe = field(default_factory=data.Recipe)
    ctc_vocab: int = 4000  # every character of the training text (about 2700), then BPE merges
    llm_vocab: int = 8000
    early_share: float = 0.05  # of the clips (19950), made before training starts (training/features.py): the GPU waits for them
    early_epochs: int = 24  # over those, while the others are made
    epochs: int = 8  # then over all
    # A fitted schedule (--fit-minutes): this many steps in all, its epochs after the early ones
    # each over the clips made by their start (0: the epochs above, each over its clips)
    steps: int = 0
    # The rest of a fitted cosine stretched or shrunk by a resumed run's --fit-minutes: each
    # (step, progress) is where the cosine stood when the steps after it were refitted
    refits: tuple = ()
    # A step waits on its operator calls, not the batch's arithmetic (training/RUN.md): 512 sees
    # twice the examples of 256 in about the same minutes; lr is 256's 1.5e-3 times about √2.
    batch_size: int = 512
    lr: float = 2e-3
    warmup_steps: int = 1000
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    rich_weight: float = 0.3
    llm_weight: float = 1.0
    # A CTC head on the encoder, for training only (never written with the model), over each
    # Mandarin clip's syllables with their tones (training/tonal.py), weighed this much (0: no
    # head). Off in the recipe: the one run with it (0.5) left the encoder's tones as faint as
    # before and scored no better (training/RUN.md).
    tone_weight: float = 0.0
    # FunASR's SpecAugLFR on the training features (after CMVN), one mask of each kind: fewer than
    # this many of the 80 mel bins (the same in each of the 7 stacked frames: lfr_rate 6, as
    # SenseVoice's own configuration, masks lfr_rate + 1 blocks), fewer than this many LFR frames
    # (60 ms each); 0 turns a mask off. A voice never heard was the open sets' largest cost
    # (training/analysis.json).
    spec_freq_width: int = 20
    spec_time_width: int = 5
    # The share of the LLM's transcript inputs replaced by another label of the batch (its
    # targets stay): the open sets' errors sit where two pieces meet, pairs training never spoke
    # (training/RUN.md), and this makes every step speak unseen pairs. Mandarin has its own share
    # (its errors all touch a junction); 30 % scored no better there than 20 % and worse in
    # English (training/RUN.md), so both are 20 %.
    token_noise: float = 0.2
    token_noise_zh: float = 0.2
    # Each LLM layer's activations recomputed in the backward pass instead of kept (transformers'
    # gradient checkpointing): the same gradients, a slower step and less device memory for it.
    # Kept, a step's peak grows with its batch's length past what the first epoch measures, and
    # an H100 ran out of memory in epoch 5 (training/RUN.md).
    recompute_llm: bool = True
    # The forward pass under torch.autocast to bfloat16 (the weights, their gradients and the
    # optimiser's state stay float32). Off: its step was faster in the bench but slower in the
    # one call that trained with it (training/RUN.md, "A step's cost").
    bf16: bool = False
    seed: int = 0
    # The model this run's weights, tokenizers and CMVN started from (--init; None: a fresh
    # start): its directory, the steps and minutes it was trained and what it started from
    init: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(encoder=ENCODER, adaptor=ADAPTOR, qwen3=QWEN3, script="training/train.py",
                 word_lists={**wordlists.SOURCES, "size": wordlists.SIZE, "heldout_exponent": corpus.WORD_EXPONENT})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        """The settings a checkpoint was written with; its dimensions must be this file's."""
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise ValueError(f"the checkpoint has no {', '.join(missing)}: another version of this trainer wrote it; "
                             "start a fresh run")
        for name, dims in (("encoder", ENCODER), ("adaptor", ADAPTOR), ("qwen3", QWEN3)):
            if d[name] != dims:
                raise ValueError(f"the checkpoint's {name} dimensions {d[name]} are not this trainer's {dims}")
        try:
            recipe = data.Recipe.from_dict(d["recipe"])
        except ValueError as e:
            raise ValueError(f"the checkpoint's {e}: another version of this trainer wrote it; start a fresh run") from None
        return cls(recipe=recipe, refits=tuple(map(tuple, d["refits"])),
                   **{f.name: d[f.name] for f in fields(cls) if f.name not in ("recipe", "refits")})

    def epoch_clips(self, early: int, every: int) -> list[int]:
        """Clips of each epoch of the unfitted schedule: the early ones, then all."""
        return [early] * self.early_epochs + [every] * self.epochs


# --- the model ----------------------------------------------------------------

class DemoModel:
    """The three parts, built with the reference classes, and the tone head training alone uses."""

    def __init__(self, s: Settings, ctc_vocab: int, llm_vocab: int, tok_ids: dict[str, int], device,
                 tone_vocab: int = 0):
        import torch

        from funasr_qwen4b.config import AdaptorConfig
        from funasr_qwen4b.reference.adaptor import AudioAdaptorQwen4B
        from funasr_qwen4b.testing import build_sensevoice, config_yaml, qwen3_config
        from transformers import Qwen3ForCausalLM

        torch.manual_seed(s.seed)
        self.sv_cfg = {**config_yaml(ENCODER), "train_conf": s.to_dict()}
        self.sv = build_sensevoice(self.sv_cfg, ctc_vocab).to(device)
        self.adaptor = AudioAdaptorQwen4B(AdaptorConfig(**ADAPTOR)).to(device)
        self.llm_cfg = qwen3_config(llm_vocab, tok_ids["<|endoftext|>"], tok_ids["<|im_end|>"], **QWEN3)
        self.llm_cfg.training = s.to_dict()
        self.llm = Qwen3ForCausalLM(self.llm_cfg).to(device)
        if s.recompute_llm:
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # the tone head: blank, then `tone_vocab` toned syllables (tonal.targets' ids)
        self.tone = (torch.nn.Linear(ENCODER["output_size"], tone_vocab + 1).to(device)
                     if s.tone_weight and tone_vocab else None)
        self.device = device

    def modules(self):
        """The parts a model directory holds (PARTS)."""
        return [self.sv, self.adaptor, self.llm]

    def trained(self) -> dict:
        """Every module the optimiser trains, by the name a checkpoint keeps it under."""
        return {**dict(zip(PARTS, self.modules())), **({"tone": self.tone} if self.tone is not None else {})}

    def parameters(self):
        return [p for m in self.trained().values() for p in m.parameters()]

    def train(self, mode: bool = True):
        for m in self.trained().values():
            m.train(mode)


@dataclass
class Batch:
    feats: object  # [B, T, 560], CMVN applied
    lengths: object  # [B]
    query: object  # [B, 4] query ids
    ctc_targets: object  # [B, U] padded with -1
    ctc_lengths: object  # [B], on the host (as host_lengths)
    tags: object  # [B, 4] CTC-vocabulary ids of the tag frames
    llm_ids: object  # [B, L]: transcript ids + <|im_end|>, padded with 0
    llm_lengths: object  # [B]
    # lengths and llm_lengths again, on the host: what a step sizes by them is read there, so the
    # host never waits for the device mid-step
    host_lengths: object
    host_llm_lengths: object
    zh: object = None  # [B] bool: a Mandarin transcript (its own token noise)
    tone_targets: object = None  # [B, S] the tone head's targets (tonal.targets), padded with -1
    tone_lengths: object = None  # [B], on the host; 0 for all but Mandarin speech


def ctc_loss(m: DemoModel, enc, lengths, targets, target_lengths):
    """FunASR's CTC loss as its module computes it for SenseVoice (`ctc_lo`, log-softmax, torch's
    CTC loss summed over the batch and divided by its size), without the module's loop over
    utterances (a host wait on the device per utterance) and its second backward pass in search
    of NaN gradients. `lengths` and `target_lengths` on the host. An utterance whose targets cannot
    fit its frames counts zero (`zero_infinity`) where the module drops it from the batch."""
    import torch.nn.functional as F

    logp = m.sv.ctc.ctc_lo(enc).transpose(0, 1).log_softmax(2)
    loss = F.ctc_loss(logp, targets, lengths, target_lengths, reduction="none", zero_infinity=True)
    return loss.sum() / len(lengths)


def tone_loss(m: DemoModel, enc, b: Batch):
    """The tone head's CTC loss over the Mandarin clips, per target syllable; the other clips'
    rows count nothing (English has no Mandarin syllables to name)."""
    import torch.nn.functional as F

    logp = m.tone(enc).transpose(0, 1).log_softmax(2)
    loss = F.ctc_loss(logp, b.tone_targets, b.host_lengths, b.tone_lengths, reduction="none", zero_infinity=True)
    return (loss * b.zh).sum() / max(1, int(b.tone_lengths.sum()))


def llm_mask(pos, ends):
    """The LLM's attention mask, [B, 1, n, n]: causal, and row i's keys before ends[i] only; what
    transformers builds from a [B, n] mask for its SDPA attention, handed over ready-made. Built
    there, it asks the device first whether any key is masked (`_ignore_causal_mask_sdpa`): a
    wait for the device in the middle of every step, after which the host launches the rest of
    the step's kernels while the device idles."""
    return ((pos <= pos.T)[None] & (pos < ends)[:, None, :])[:, None]  # [b, 1, query, key]


def losses(m: DemoModel, b: Batch, token_noise=0.0) -> dict:
    """The CTC, tag, LLM and tone losses of a batch (the last zero without a tone head);
    `token_noise` (a share, or a tensor of one a row) of the LLM's transcript inputs are replaced
    by labels drawn from the whole batch (Settings.token_noise)."""
    import torch
    import torch.nn.functional as F

    speech = torch.cat((m.sv.embed(b.query), b.feats), dim=1)
    enc, enc_lens = m.sv.encoder(speech, b.lengths + 4)
    ctc = ctc_loss(m, enc[:, 4:], b.host_lengths, b.ctc_targets, b.ctc_lengths)
    ctc = ctc * len(b.ctc_lengths) / max(1, int(b.ctc_lengths.sum()))  # per token, like the LLM's loss
    tag_logits = m.sv.ctc.ctc_lo(enc[:, :4])
    rich = F.cross_entropy(tag_logits.reshape(-1, tag_logits.shape[-1]), b.tags.reshape(-1))

    frames = torch.arange(enc.shape[1], device=enc.device)[None] < enc_lens[:, None]
    audio = m.adaptor(enc, mask=frames)
    # Each row: its audio rows, then its transcript shifted right; built with whole-batch index
    # arithmetic (a loop over utterances costs kernel launches per utterance, the step's real cost).
    a, n_ids = enc_lens[:, None], b.llm_lengths[:, None]
    n = int((b.host_lengths + 4 + b.host_llm_lengths).max()) - 1  # the encoder keeps each length
    pos = torch.arange(n, device=enc.device)[None]
    last = b.llm_ids.shape[1] - 1
    text_in = torch.gather(b.llm_ids, 1, (pos - a).clamp(0, last))
    is_text = (pos >= a) & (pos < a + n_ids - 1)
    # The LM head and its softmax at the labelled positions only (row i's transcript: from a_i - 1,
    # llm_ids[i, j] at a_i - 1 + j): a small share of the rows, and the largest product of the step.
    # Their count is known on the host, so the indices are built without a wait on the device.
    count = int(b.host_llm_lengths.sum())
    row = torch.repeat_interleave(torch.arange(len(b.host_llm_lengths), device=enc.device), b.llm_lengths,
                                  output_size=count)
    j = torch.arange(count, device=enc.device) - (torch.cumsum(b.llm_lengths, 0) - b.llm_lengths)[row]
    labels = b.llm_ids[row, j]
    if torch.is_tensor(token_noise) or token_noise:
        rate = token_noise[:, None] if torch.is_tensor(token_noise) else token_noise
        drawn = labels[torch.randint(count, text_in.shape, device=enc.device)]
        text_in = torch.where(torch.rand(text_in.shape, device=enc.device) < rate, drawn, text_in)
    inputs = torch.where((pos < a)[..., None], F.pad(audio, (0, 0, 0, n - audio.shape[1])),
                         torch.where(is_text[..., None], m.llm.get_input_embeddings()(text_in), 0.0))
    hidden = m.llm.model(inputs_embeds=inputs, attention_mask=llm_mask(pos, a + n_ids - 1),
                         use_cache=False).last_hidden_state
    logits = m.llm.lm_head(hidden[row, enc_lens[row] - 1 + j])
    llm = F.cross_entropy(logits, labels)
    tone = tone_loss(m, enc[:, 4:], b) if m.tone is not None else ctc.new_zeros(())
    return {"ctc": ctc, "rich": rich, "llm": llm, "tone": tone}


def query_ids(language: str) -> list[int]:
    """The encoder's four query ids of a training utterance: its language query, then the rest
    of the inference query without text normalisation."""
    from funasr_qwen4b.config import LANGUAGE_IDS, QueryConfig

    return [LANGUAGE_IDS[language], *QueryConfig().ids[1:3], QueryConfig(textnorm="woitn").ids[3]]


def allow_tf32(device: str) -> None:
    """TF32 matmuls on a CUDA device, as the recipe trains."""
    import torch

    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def optimizer(params: list, s: Settings):
    import torch

    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.98), fused=True)


def train_step(m: DemoModel, opt, params: list, b: Batch, s: Settings, specaug, lr: float) -> dict:
    """One optimiser step on batch `b` at learning rate `lr` (SpecAugment first, unless None);
    returns its losses, on the device."""
    import torch

    for g in opt.param_groups:
        g["lr"] = lr
    if specaug is not None:
        b = replace(b, feats=specaug(b.feats, b.lengths)[0])
    with torch.autocast(b.feats.device.type, dtype=torch.bfloat16, enabled=s.bf16):
        parts = losses(m, b, torch.where(b.zh, s.token_noise_zh, s.token_noise))
    loss = parts["ctc"] + s.rich_weight * parts["rich"] + s.llm_weight * parts["llm"] + s.tone_weight * parts["tone"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
    opt.step()
    return parts


# --- the examples, on the training device -----------------------------------------

class Examples:
    """Every training example where the model is: the features end to end ([rows, 560], uint8 on
    `features.to_grid`'s grid), each clip's first row and length, and its CTC targets, tags and
    LLM ids as padded tables. A batch is then a few gathers: no per-utterance work and no
    host-to-device copy per step.
    Example j is clip `order[j]` of the training list (training/features.py's two parts, in turn);
    the features arrive a part at a time (`add`)."""

    SLICE = 1 << 16  # rows put on the grid at a time: a part may be most of the device's rows

    def __init__(self, train: list[data.Item], order: list[int], sp, llm_tok, device,
                 tones: list[list[int]] | None = None):
        """`tones`: each training clip's tone-head targets (tonal.targets), or None without a tone head."""
        import torch

        self.device, self.order = device, order
        im_end = llm_tok.convert_tokens_to_ids("<|im_end|>")
        tag_ids = {t: sp.piece_to_id(t) for t in (*TAGS[0].values(), *TAGS[1:], *TAGS_NONSPEECH)}
        items = [train[i] for i in order]
        ctc = [ids if it.text else [] for it, ids in zip(items, sp.encode([ctc_text(it.text, it.lang) for it in items]))]
        # the fast tokenizer's own batch (the ids `llm_tok(texts)` gives, without its per-text wrapping)
        llm = [e.ids + [im_end] for e in llm_tok.backend_tokenizer.encode_batch([it.text for it in items],
                                                                                 add_special_tokens=False)]
        tags = [[tag_ids[t] for t in ((TAGS[0][it.lang], *TAGS[1:]) if it.text else TAGS_NONSPEECH)] for it in items]

        def table(rows: list[list[int]], pad: int):
            t = np.full((len(rows), max(1, *map(len, rows))), pad, np.int64)
            for j, r in enumerate(rows):
                t[j, :len(r)] = r
            return torch.from_numpy(t).to(device), np.array([len(r) for r in rows], np.int64)

        (self.ctc, self.ctc_len), (self.llm, self.llm_len) = table(ctc, -1), table(llm, 0)
        self.tone, self.tone_len = table([tones[i] for i in order] if tones else [[] for _ in order], -1)
        self.llm_len_dev = torch.from_numpy(self.llm_len).to(device)
        self.tags = torch.tensor(tags, dtype=torch.long, device=device)
        self.zh = torch.tensor([it.lang == "zh" for it in items], device=device)
        self.feats, self.frames, self.rows = None, np.zeros(0, np.int64), 0
        # Bytes the feature buffers may take on the device (None: what the examples need); a
        # buffer that reaches it is full and takes no more clips (`set_device_need`).
        self.budget, self.full = None, False

    @property
    def loaded(self) -> int:
        return len(self.frames)

    @property
    def nbytes(self) -> int:
        """What the feature buffer takes on the device."""
        return 0 if self.feats is None else self.feats.numel() * self.feats.element_size()

    def set_device_need(self, need: int, total: int) -> None:
        """What all but the features take at their peak on a device of `total` bytes (the model,
        optimiser, tables and a step, measured over an epoch): the buffers get the rest, less 5 %
        of the device and 10 % of that need, so that a device too small for every clip trains
        on the clips it holds instead of running out of memory."""
        self.budget = int(0.95 * total - 1.1 * need)

    def add(self, part: features.Part) -> None:
        """Append the next clips' features. Their rows go into one buffer sized, at the rows a
        clip so far, for every example (within the budget; on a GPU, only what is added until a
        step's need is measured), so that adding rarely moves what is there; when it must, those
        rows wait on the host (the device never holds two buffers). Clips beyond a full buffer
        are left out."""
        import torch

        if part.index.tolist() != self.order[self.loaded:self.loaded + len(part.index)]:
            raise ValueError("the features' clips are not the examples' next ones")
        if self.full:
            return
        rows, frames = part.feats, part.frames
        end, clips = self.rows + len(rows), self.loaded + len(frames)
        if self.feats is None or end > len(self.feats):
            # 5 % above the mean so far, so that the clips still to come rarely outgrow it
            room = end + math.ceil(1.05 * end / max(1, clips) * (len(self.order) - clips))
            if self.budget is None and self.device.type == "cuda":  # a step's need is not measured yet
                room = end
            elif self.budget is not None:
                room = max(0, min(room, self.budget // features.DIM))
            if room > self.rows or self.feats is None:
                held = None if self.feats is None else self.feats[:self.rows].cpu()
                self.feats = None  # freed before the new buffer is made
                self.feats = torch.empty((room, features.DIM), dtype=torch.uint8, device=self.device)
                if held is not None:
                    self.feats[:self.rows] = held.to(self.device)
            keep = int(np.searchsorted(np.cumsum(frames), len(self.feats) - self.rows, side="right"))
            if keep < len(frames):
                self.full = True
                log.info(f"the device holds the features of {self.loaded + keep} of the {len(self.order)} clips: "
                         "training goes on over those")
                frames = frames[:keep]
                rows = rows[:frames.sum()]
                end = self.rows + len(rows)
        for a in range(0, len(rows), self.SLICE):
            b = min(a + self.SLICE, len(rows))
            self.feats[self.rows + a:self.rows + b] = features.to_grid(torch.from_numpy(rows[a:b]).to(self.device))
        self.rows = end
        self.frames = np.concatenate((self.frames, frames))
        self.frames_dev = torch.from_numpy(self.frames).to(self.device)
        self.first_dev = torch.from_numpy(np.cumsum(self.frames) - self.frames).to(self.device)

    def batches(self, rng: random.Random, n: int, batch_size: int, cmvn, skip: int = 0):
        """One epoch over the first n examples: sorted by length (with a little noise), cut into
        batches, the batches shuffled; each utterance's language query drawn from `rng`.
        Yields (example indices, Batch), after the first `skip` batches (an epoch resumed where
        it paused: `rng` in the state this epoch began with)."""
        import torch

        assert n <= self.loaded, (n, self.loaded)
        order = sorted(range(n), key=lambda k: self.frames[k] + rng.random() * 8)
        chunks = [order[k:k + batch_size] for k in range(0, n, batch_size)]
        rng.shuffle(chunks)
        flat = np.array([k for c in chunks for k in c], np.int64)
        query = np.array([query_ids(rng.choice(QUERY_LANGUAGES)) for _ in flat], np.int64)
        flat_dev, query_dev = torch.from_numpy(flat).to(self.device), torch.from_numpy(query).to(self.device)
        shift, scale = cmvn
        start = sum(map(len, chunks[:skip]))
        for c in chunks[skip:]:
            idx, k = flat[start:start + len(c)], flat_dev[start:start + len(c)]
            T = int(self.frames[idx].max())
            lengths, pos = self.frames_dev[k], torch.arange(T, device=self.device)
            rows = self.first_dev[k][:, None] + torch.minimum(pos[None], lengths[:, None] - 1)
            x = (features.from_grid(self.feats[rows]) + shift) * scale * (pos[None, :, None] < lengths[:, None, None])
            yield idx, Batch(x, lengths, query_dev[start:start + len(c)],
                        self.ctc[k][:, :int(self.ctc_len[idx].max())], torch.from_numpy(self.ctc_len[idx]),
                        self.tags[k], self.llm[k][:, :int(self.llm_len[idx].max())], self.llm_len_dev[k],
                        torch.from_numpy(self.frames[idx]), torch.from_numpy(self.llm_len[idx]), self.zh[k],
                        self.tone[k][:, :max(1, int(self.tone_len[idx].max()))], torch.from_numpy(self.tone_len[idx]))
            start += len(c)


# --- the run ----------------------------------------------------------------------

def write_tokenizers(model_dir: Path, s: Settings, speech: list[tuple[str, str]]) -> None:
    """CTC BPE into model_dir/sensevoice, the LLM tokenizer into model_dir/qwen3, from the
    (text, language) of every speech clip (run in a worker while the features are made)."""
    from funasr_qwen4b.testing import BPE_NAME

    (model_dir / "sensevoice").mkdir(parents=True, exist_ok=True)
    build_ctc_bpe(model_dir / "sensevoice" / BPE_NAME, [ctc_text(t, lang) for t, lang in speech], s.ctc_vocab)
    build_llm_tokenizer([t for t, _ in speech], s.llm_vocab).save_pretrained(model_dir / "qwen3")


def load_tokenizers(model_dir: Path):
    import sentencepiece as spm
    from transformers import PreTrainedTokenizerFast

    from funasr_qwen4b.testing import BPE_NAME

    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "sensevoice" / BPE_NAME))
    return sp, PreTrainedTokenizerFast.from_pretrained(model_dir / "qwen3")


# What must be the same for a run to start from another's model (--init): the data its
# tokenizers and CMVN were made from, and the shapes of its weights.
INIT_MATCH = ("recipe", "ctc_vocab", "llm_vocab", "encoder", "adaptor", "qwen3")


def init_record(model: Path, s: Settings) -> dict:
    """Settings.init for a run starting from `model` (a directory this trainer wrote, or its
    `training.bf16_copy`); ValueError when it was not trained on this run's recipe and shapes."""
    path = model / "training_log.json"
    if not path.is_file():
        raise ValueError(f"{model} has no training_log.json: --init takes a model directory this trainer wrote")
    trained = json.loads(path.read_text(encoding="utf-8"))
    theirs, ours = trained["settings"], json.loads(json.dumps(s.to_dict()))
    differ = [k for k in INIT_MATCH if theirs.get(k) != ours[k]]
    if differ:
        raise ValueError(f"{model} was trained with another {', '.join(differ)} than this run's "
                         f"(--quick or not, or another version of this trainer): start from a model of this recipe")
    return {"model": str(model), "steps": trained["calls"][-1]["to_step"], "minutes": trained["minutes"],
            "device": trained["device"], "init": theirs.get("init")}


def tone_targets(train: list[data.Item], work: Path, resumed: bool) -> tuple[list[list[int]], list[str]]:
    """tonal.targets of the training clips (Mandarin speech; none for the others): made by a
    run's first call and kept in its work directory, where the calls that resume it read them
    (made on one core, they take a while that the GPU would wait for again)."""
    path = work / "tone_targets.json"
    if resumed and path.is_file():
        kept = json.loads(path.read_text(encoding="utf-8"))
        return kept["ids"], kept["vocab"]
    ids, vocab = tonal.targets([it.text if it.lang == "zh" else "" for it in train])
    text = json.dumps({"ids": ids, "vocab": vocab}, ensure_ascii=False, separators=(",", ":"))
    write_atomic(path, lambda p: Path(p).write_text(text, encoding="utf-8"))
    return ids, vocab


def copy_tokenizers(model: Path, model_dir: Path) -> None:
    """The tokenizers of `model` into model_dir, where write_tokenizers would write them."""
    from funasr_qwen4b.testing import BPE_NAME

    for sub, names in (("sensevoice", [BPE_NAME]), ("qwen3", [p.name for p in (model / "qwen3").glob("tokenizer*")])):
        (model_dir / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(model / sub / name, model_dir / sub / name)


def load_weights(m: DemoModel, model: Path) -> None:
    """The weights of a model directory into `m`, each part strictly by name (any float dtype:
    a bfloat16 copy becomes float32 here)."""
    from funasr_qwen4b.reference.torch_load import load_pt, state_dict_of
    from transformers import Qwen3ForCausalLM

    for mod, path in ((m.sv, model / "sensevoice" / "model.pt"), (m.adaptor, model / "adaptor.pt")):
        mod.load_state_dict(state_dict_of(load_pt(path), path))
    m.llm.load_state_dict(Qwen3ForCausalLM.from_pretrained(model / "qwen3").state_dict())


def spec_augment(s: Settings):
    """FunASR's SpecAugLFR as Settings asks for it (training/specaug.py: drawn on the host), or
    None when both masks are off."""
    if not (s.spec_freq_width or s.spec_time_width):
        return None
    from .specaug import SpecAugLFR

    return SpecAugLFR(s.spec_freq_width, s.spec_time_width, lfr_rate=6)


def cosine_progress(step: int, total: int, s: Settings) -> float:
    """How far the cosine after the warm-up is at `step` (1 at `total`): linear in the steps
    between the warm-up's end, each refit and the end."""
    points = [(s.warmup_steps, 0.0), *s.refits, (total, 1.0)]
    (a, pa), (b, pb) = next((seg for seg in itertools.pairwise(points) if step < seg[1][0]), points[-2:])
    return pa + (pb - pa) * (step - a) / max(1, b - a)


def cosine_lr(step: int, total: int, s: Settings) -> float:
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    return s.lr * 0.5 * (1 + math.cos(math.pi * cosine_progress(step, total, s)))


def read_checkpoint(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: a paused run leaves WORK/{CHECKPOINT} (on a lent device machine it lasts "
            f"only while that machine is held; training/RUN.md)")
    # Our own file (numpy and Python random states in it): not a weights-only pickle.
    return torch.load(path, map_location="cpu", weights_only=False)


def _rng_states(device) -> dict:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_states(states: dict, device) -> None:
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if device.type == "cuda":
        if states["cuda"] is None:
            raise ValueError("this checkpoint was written on the CPU; resume it on the CPU")
        torch.cuda.set_rng_state(states["cuda"], device)


@dataclass(frozen=True)
class Limits:
    """When this process stops training before the schedule's end (all optional)."""

    pause_minutes: float | None = None  # checkpoint and exit after the last step that ends before this
    pause_epochs: int | None = None  # checkpoint and exit once this many epochs (of the whole schedule) are done
    max_minutes: float | None = None  # write the model (and a checkpoint) after the last step that ends before this
    # a fresh run only: after epoch FIT_AFTER_EPOCHS, fit the schedule's steps to end training this
    # many minutes after the process started, its epochs from then on over the clips made so far
    fit_minutes: float | None = None
    pause_steps: int | None = None  # checkpoint and exit once this many steps (of the whole schedule) are done


FIT_AFTER_EPOCHS = 2  # the first epoch pays for warming up kernels: the second's rate decides
# A resumed fitted run refits after this many of its steps, at the rate of their second half
# (the first pay for warming up kernels and loading the other clips), then again after each
# further this many, at the rate since that half: the rate drifts with the clips being made
REFIT_AFTER_STEPS = 200


def run(out: Path, work: Path, s: Settings, device: str, workers: int, *, cache_dir: Path,
        resume: dict | None = None, limits: Limits = Limits(), funasr_modules_only: bool = False,
        t0: float | None = None, profile_steps: tuple[int, int] | None = None) -> dict | None:
    """Train (or go on training `resume`) and write the model to `out`; returns the summary,
    or None when the run paused (its checkpoint is work/checkpoint.pt)."""
    import torch
    from funasr.frontends.wav_frontend import load_cmvn

    from funasr_qwen4b.sources import parse_am_mvn
    from funasr_qwen4b.testing import write_am_mvn, write_sensevoice_dir

    t0 = t0 or time.time()
    model_dir = work / "model"
    if s.recipe.copies != 1:
        raise ValueError(f"training.features makes one copy of each clip, not {s.recipe.copies}")
    _, train = data.items(s.recipe)
    parts = features.layout(len(train), s.recipe.seed, s.early_share)
    cache = features.Cache(cache_dir, s.recipe, parts)
    done = resume["epoch"] if resume else 0
    # a run paused inside epoch done + 1: its steps and clips there, the losses summed so far
    within = resume.get("within") if resume else None
    if s.steps:  # fitted: the steps are fixed, an epoch's clips are those made by its start
        total, all_now = s.steps, False
    else:
        sizes = s.epoch_clips(len(parts[0]), len(train))
        total = sum(math.ceil(k / s.batch_size) for k in sizes)
        all_now = sizes[done] > len(parts[0]) if done < len(sizes) else True
    step = resume["step"] if resume else 0
    log.info(f"{len(train)} training clips ({sum(not it.text for it in train)} without speech), {len(parts[0])} of "
             f"them first; " + (f"{total} steps fitted to the time, each epoch over the clips made by its start"
                                if s.steps else f"{len(sizes)} epochs ({s.early_epochs} over those, {s.epochs} over "
                                                f"all), {total} steps")
             + ("" if not resume else f"; resuming in epoch {done + 1} after its step {within['steps']} (step {step})"
                if within else f"; resuming after epoch {done} (step {step})"))

    # The features missing from the cache: the part needed now while the tokenizers are made
    # (a fresh run), then the other in the background, with two cores left to the trainer. The
    # model and the examples' tables are built while the first part is made: the GPU waits for it.
    t_data = time.time()
    with features.pool(workers, funasr_modules_only) as pool:
        speech = [(it.text, it.lang) for it in train if it.text]
        toks = None
        if s.init and not resume:
            copy_tokenizers(Path(s.init["model"]), model_dir)
        elif not resume:
            toks = pool.submit(write_tokenizers, model_dir, s, speech)
        made = cache.submit(pool, 0, train) + (cache.submit(pool, 1, train) if all_now else [])
        if toks:
            toks.result()
        sp, llm_tok = load_tokenizers(model_dir)
        ctc_size, llm_vocab = sp.get_piece_size(), -(-len(llm_tok) // 64) * 64
        dev = torch.device(device)
        tok_ids = {t: llm_tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
        tones, tone_vocab = tone_targets(train, work, resume is not None) if s.tone_weight else (None, [])
        m = DemoModel(s, ctc_size, llm_vocab, tok_ids, dev, len(tone_vocab))
        if s.init and not resume:
            load_weights(m, Path(s.init["model"]))
        n_params = {k: sum(p.numel() for p in mod.parameters()) for k, mod in m.trained().items()}
        log.info(f"parameters: {n_params}")
        ex = Examples(train, parts[0] + parts[1], sp, llm_tok, dev, tones)
        for i, f in enumerate(made):
            f.result()
            if (i + 1) % 100 == 0:
                log.info(f"features: {i + 1}/{len(made)} chunks")
    background = None
    if not all_now and cache.missing(1):
        background = features.pool(max(1, workers - 2), funasr_modules_only)
        pending = cache.submit(background, 1, train)
    try:
        first = cache.load(0)
        if resume:
            shift, scale = resume["cmvn"]
        elif s.init:  # the features normalised as the weights learnt them
            shutil.copyfile(Path(s.init["model"]) / "sensevoice" / "am.mvn", model_dir / "sensevoice" / "am.mvn")
            shift, scale = parse_am_mvn(model_dir / "sensevoice" / "am.mvn")
        else:
            mean, std = features.cmvn(first)
            shift, scale = -mean, 1.0 / np.maximum(std, 1e-5)
            write_am_mvn(model_dir / "sensevoice" / "am.mvn", shift, scale)
        # Train on what inference computes: the CMVN as FunASR reads it back from the am.mvn text.
        cmvn = torch.from_numpy(np.asarray(load_cmvn(str(model_dir / "sensevoice" / "am.mvn")), dtype=np.float32))
        log.info(f"features: {first.rows} rows of {len(first.frames)} clips ready ({time.time() - t_data:.0f} s; "
                 f"{len(made)} chunks made); CTC vocabulary {ctc_size}, LLM vocabulary {len(llm_tok)} "
                 f"(embedding rows {llm_vocab})")
        device_need = resume.get("device_need") if resume else None
        if device_need:
            ex.set_device_need(device_need, torch.cuda.get_device_properties(dev).total_memory)
        ex.add(first)
        del first
        if all_now:
            ex.add(cache.load(1))
        cmvn_dev = (cmvn[0].to(dev), cmvn[1].to(dev))

        specaug = spec_augment(s)
        params = m.parameters()
        opt = optimizer(params, s)
        rng = random.Random(s.seed)
        random.seed(s.seed)
        np.random.seed(s.seed)
        history, calls = [], []
        if resume:
            for name, mod in m.trained().items():
                mod.load_state_dict(resume["model"][name])
            opt.load_state_dict(resume["optimizer"])
            rng.setstate(resume["rng"]["batches"])
            _set_rng_states(resume["rng"], dev)
            history, calls = resume["history"], resume["calls"]
        call = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else device,
                "from_epoch": done, "seconds": 0.0}

        def of_total(part: dict | None = None) -> str:
            where = f"epoch {epoch}" if part is None else f"step {part['steps']} of epoch {epoch + 1}"
            return where + ("" if s.steps else f" of {len(sizes)}") + f", step {step} of {total}"

        def stop(epoch: int, write_model: bool, part: dict | None = None, epoch_rng=None) -> dict | None:
            """Checkpoint after `epoch` and, when paused inside the next, `part` of it (its steps,
            clips, loss sums and seconds so far; `epoch_rng` the batch order's state it began with),
            unless the schedule is done; then write the model if asked (else say how to go on)."""
            nonlocal background
            if background is not None:  # chunks being made finish; the rest are made by the run that resumes
                features.stop(background, pending, wait=True)
                background = None
            call.update(to_epoch=epoch, to_step=step, seconds=round(time.time() - t0, 1))
            if step < total:
                state = {"settings": s.to_dict(), "epoch": epoch, "within": part, "step": step, "history": history,
                         "calls": calls + [call], "cmvn": (shift, scale), "data_cache": str(cache_dir),
                         "device_need": device_need,
                         "model": {name: mod.state_dict() for name, mod in m.trained().items()},
                         "optimizer": opt.state_dict(),
                         "rng": {"batches": epoch_rng if part else rng.getstate(), **_rng_states(dev)}}
                torch.save(state, work / f"{CHECKPOINT}.tmp")
                os.replace(work / f"{CHECKPOINT}.tmp", work / CHECKPOINT)
            if not write_model:
                log.info(f"paused after {of_total(part)} ({(time.time() - t0) / 60:.1f} minutes); go on with: "
                         f"python -m training.train --out {out} --resume {work / CHECKPOINT}")
                return None
            m.train(False)
            write_sensevoice_dir(model_dir / "sensevoice", m.sv.cpu(), m.sv_cfg, shift, scale, bpe=True)
            torch.save({"model_state_dict": m.adaptor.cpu().state_dict(), "config": ADAPTOR,
                        "training": s.to_dict()}, model_dir / "adaptor.pt")
            m.llm.cpu().save_pretrained(model_dir / "qwen3")
            every = calls + [call]
            summary = {"settings": s.to_dict(), "parameters": n_params, "history": history,
                       "device": call["device"], "torch": torch.__version__, "calls": every,
                       "minutes": round(sum(c["seconds"] for c in every) / 60, 1)}
            if step < total:
                summary["cut"] = (f"stopped by --max-minutes after {of_total(part)} (learning rate "
                                  f"{cosine_lr(step, total, s) / s.lr:.1%} of its peak); "
                                  f"--resume {work / CHECKPOINT} finishes the schedule")
                log.info(summary["cut"])
            (model_dir / "training_log.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False),
                                                         encoding="utf-8")
            tmp = out.with_name(out.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(model_dir, tmp)
            tmp.rename(out)
            if step == total:
                (work / CHECKPOINT).unlink(missing_ok=True)
            return summary

        def clips(epoch: int) -> int:
            """Epoch `epoch`'s clips (0-based): a fitted schedule's after its early epochs are
            those made by now (what is written is loaded here), any other's are the schedule's."""
            nonlocal background
            if epoch < s.early_epochs:
                return len(parts[0])
            if s.steps:
                if ex.loaded < len(ex.order) and not ex.full:
                    t_load, loaded = time.time(), ex.loaded
                    ex.add(cache.ready(1, ex.loaded - len(parts[0])))
                    if ex.loaded > loaded:
                        log.info(f"features of {ex.loaded - loaded} more clips on the device "
                                 f"({time.time() - t_load:.1f} s)")
                if (ex.loaded == len(ex.order) or ex.full) and background is not None:
                    # A full buffer takes no more clips: the chunks not begun are not made, and
                    # nothing waits for those being made.
                    features.stop(background, pending, wait=False)
                    background = None
                    if ex.full:
                        log.info(f"the features of the other {len(ex.order) - ex.loaded} clips are not made")
                return ex.loaded
            if sizes[epoch] > ex.loaded and not ex.full:
                t_wait = time.time()
                if background is not None:
                    for f in pending:
                        f.result()
                    background.shutdown()
                    background = None
                ex.add(cache.load(1))
                log.info(f"features of the other {len(parts[1])} clips loaded ({time.time() - t_wait:.0f} s, waiting "
                         f"included)")
            return min(sizes[epoch], ex.loaded)

        trained, trained_steps = 0.0, 0  # this process's seconds and steps in epochs
        epoch, n = done, clips(done) if step < total else 0
        if within:
            if n < within["clips"]:
                raise RuntimeError(f"epoch {done + 1} paused over {within['clips']} clips, but {n} are in the "
                                   f"feature cache {cache_dir}")
            n = within["clips"]
        log.info(f"training from step {step} of {total}, {time.time() - t0:.0f} s after the start")

        def late(minutes: float | None, per_step: float) -> bool:
            """Would one more step end after `minutes` from the start?"""
            return minutes is not None and time.time() - t0 + per_step > 60 * minutes

        # a resumed fitted run: the rest of its cosine fitted to this process's time and rate
        refit = limits.fit_minutes if resume and s.steps else None
        t_half = None
        profiler = StepProfile(*profile_steps, dev) if profile_steps else None

        while step < total:
            skip = within["steps"] if within else 0
            full = math.ceil(n / s.batch_size)
            k = min(full, total - step + skip)
            epoch_rng = rng.getstate()
            m.train()
            sums = torch.tensor(within["sums"] if within else [0.0] * len(LOSSES), dtype=torch.float64, device=dev)
            before, t_ep = (within["seconds"] if within else 0.0), time.time()
            within = None
            for j, (_, b) in enumerate(itertools.islice(ex.batches(rng, n, s.batch_size, cmvn_dev, skip), full - skip),
                                       start=skip + 1):
                if profiler:
                    profiler.before(trained_steps + j - skip - 1)
                parts_ = train_step(m, opt, params, b, s, specaug, cosine_lr(step, total, s))
                step += 1
                sums += torch.stack([parts_[name].detach() for name in LOSSES]).double()
                here = trained_steps + j - skip  # this process's steps
                if profiler and (profiled := profiler.after(here)):
                    call["profile"] = profiled
                if refit is not None and here == REFIT_AFTER_STEPS // 2:
                    t_half = time.time()
                elif refit is not None and here % REFIT_AFTER_STEPS == 0 and step < total:
                    # the rate of all this process's steps since the first half, the epochs' loading
                    # of new clips included
                    rate = (time.time() - t_half) / (here - REFIT_AFTER_STEPS // 2)
                    new = step + max(1, int((60 * refit - (time.time() - t0)) / rate))
                    # the cosine goes on from where it is, over the steps that fit (none moves in the warm-up)
                    knots = s.refits + (((step, cosine_progress(step, total, s)),) if step > s.warmup_steps else ())
                    log.info(f"schedule refitted to {refit:g} minutes at {rate:.3f} s a step: {new} steps in all "
                             f"instead of {total}")
                    s, total = replace(s, steps=new, refits=knots), new
                    k = min(full, j + total - step)
                if j == k:
                    break
                per_step = (trained + time.time() - t_ep) / here
                pause = limits.pause_steps == step or late(limits.pause_minutes, per_step)
                if pause or late(limits.max_minutes, per_step):
                    part = {"steps": j, "clips": n, "sums": sums.tolist(), "seconds": before + time.time() - t_ep}
                    return stop(epoch, write_model=not pause, part=part, epoch_rng=epoch_rng)
            means = (sums / k).tolist()  # waits for the epoch's last step
            seconds = time.time() - t_ep
            trained, trained_steps, epoch = trained + seconds, trained_steps + k - skip, epoch + 1
            row = {"epoch": epoch, "clips": n, **({"steps": k} if s.steps else {}),
                   **{name: round(v, 4) for name, v in zip(LOSSES, means)},
                   "lr": round(cosine_lr(step - 1, total, s), 7), "seconds": round(before + seconds, 1)}
            history.append(row)
            log.info(json.dumps(row))
            if dev.type == "cuda" and device_need is None:
                device_need = torch.cuda.max_memory_allocated(dev) - ex.nbytes
                ex.set_device_need(device_need, torch.cuda.get_device_properties(dev).total_memory)
                log.info(f"device memory: {device_need / 2**30:.1f} GiB at the peak besides the features "
                         f"({ex.nbytes / 2**30:.1f} GiB), "
                         f"{ex.budget / 2**30:.1f} GiB for them")
            if not all(map(math.isfinite, means)):
                raise FloatingPointError(f"epoch {epoch}: a loss is not finite ({row}); the run is lost")
            if limits.fit_minutes is not None and not s.steps and epoch == min(FIT_AFTER_EPOCHS, len(sizes) - 1):
                # The steps that fit the time left at this epoch's rate; from here each epoch takes
                # the clips made by its start (none waits for them), the cosine ending with the time.
                left, rate = 60 * limits.fit_minutes - (time.time() - t0), seconds / (k - skip)  # this process's steps
                total = step + max(0, int(left / rate))
                s = replace(s, early_epochs=min(s.early_epochs, epoch), steps=total)
                log.info(f"schedule fitted to {limits.fit_minutes:g} minutes at {rate:.3f} s a step: {total} "
                         f"steps in all (the recipe's {sum(math.ceil(c / s.batch_size) for c in sizes)}), each epoch "
                         "from here over the clips made by its start"
                         + ("" if step <= s.warmup_steps else "; the warm-up was over, so the learning rate jumps"))
            if step == total:
                break
            elapsed = time.time() - t0
            ready = True
            time_limits = [60 * x for x in (limits.pause_minutes, limits.max_minutes) if x is not None]
            per_step = trained / trained_steps
            if not s.steps and sizes[epoch] > ex.loaded and not ex.full and background is not None and time_limits:
                # The next epoch needs the clips still being made: wait for them only while the
                # epoch would still fit, else stop here (the run that resumes makes the rest).
                next_epoch = per_step * math.ceil(sizes[epoch] / s.batch_size)
                ready = not futures.wait(pending, timeout=max(0.0, min(time_limits) - elapsed - next_epoch)).not_done
            if ready:
                n = clips(epoch)

            def out_of_time(minutes: float | None) -> bool:
                return minutes is not None and (not ready or late(minutes, per_step))

            if limits.pause_epochs == epoch or limits.pause_steps == step or out_of_time(limits.pause_minutes):
                return stop(epoch, write_model=False)
            if out_of_time(limits.max_minutes):
                return stop(epoch, write_model=True)
        return stop(epoch, write_model=True)
    finally:  # an error must not leave the background processes making features
        if background is not None:
            features.stop(background, pending, wait=False)


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", required=True, help="directory for sensevoice/, adaptor.pt, qwen3/ (must not exist)")
    ap.add_argument("--work", help="checkpoint, tokenizers and (unless --data-cache) the feature cache "
                                   "(default: OUT.work; a fresh run keeps only a matching feature cache from it)")
    ap.add_argument("--data-cache", help="the feature cache's directory (default: WORK/data)")
    ap.add_argument("--resume", metavar="CHECKPOINT", help="go on with a paused run (its settings are the checkpoint's)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    ap.add_argument("--seed", type=int, help="model initialisation and batch order (data has its own; default 0)")
    ap.add_argument("--epochs", type=int, help=f"epochs over all clips (default {Settings.epochs})")
    ap.add_argument("--init", metavar="MODEL",
                    help="start from this model's weights, tokenizers and CMVN (a directory this trainer wrote on "
                         "the same recipe, or its training.bf16_copy) instead of a random model")
    ap.add_argument("--lr", type=float, help=f"the peak learning rate (default {Settings.lr})")
    ap.add_argument("--tone-weight", type=float,
                    help="train a tone head on the encoder, its loss weighed this much (default: none)")
    ap.add_argument("--bf16", action="store_true",
                    help="run each step's forward pass under autocast to bfloat16 (weights and optimiser stay float32)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 100 utterances a language, 1 + 2 epochs, 4 clips of each held-out set scored")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for espeak-ng and features")
    ap.add_argument("--pause-after-minutes", type=float,
                    help="checkpoint and exit after the last step that ends before this much wall time (this process)")
    ap.add_argument("--pause-after-epochs", type=int, help="checkpoint and exit once this many epochs are done")
    ap.add_argument("--pause-after-steps", type=int, help="checkpoint and exit once this many steps are done")
    ap.add_argument("--max-minutes", type=float,
                    help="write the model after the last step that ends before this much wall time, keeping a "
                         "checkpoint")
    ap.add_argument("--fit-minutes", type=float,
                    help=f"after epoch {FIT_AFTER_EPOCHS}, fit the schedule's steps (instead of --epochs) to "
                         "end the training, over this call and the resuming ones, this many minutes after this "
                         f"process starts, at epoch {FIT_AFTER_EPOCHS}'s rate; each epoch from then on trains "
                         "over the clips made by its start (the checkpoint keeps the steps). With --resume of "
                         f"a fitted run: after {REFIT_AFTER_STEPS} steps, stretch or shrink the rest of the "
                         "cosine to end this many minutes after this process starts, at their rate")
    ap.add_argument("--profile-steps", type=int, nargs=2, metavar=("AFTER", "COUNT"),
                    help="log the device's busy time against the wall time of COUNT steps of this process, "
                         "after its first AFTER (torch.profiler; training/RUN.md)")
    ap.add_argument("--no-eval", action="store_true",
                    help="skip the held-out scores (then: python -m training.evaluate OUT --log)")
    add_modules_only_option(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    apply_modules_only_option(args)
    import torch

    out = Path(args.out)
    if out.exists():
        sys.exit(f"error: {out} exists; give a new --out directory")
    resume = None
    if args.resume:
        if (args.seed is not None or args.epochs is not None or args.lr is not None or args.quick or args.work
                or args.init or args.tone_weight is not None or args.bf16):
            sys.exit("error: --resume takes the settings and the work directory from the checkpoint; "
                     "drop --seed, --epochs, --quick, --work, --init, --lr, --tone-weight and --bf16")
        try:
            resume = read_checkpoint(Path(args.resume))
            s = Settings.from_dict(resume["settings"])
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"error: {e}")
        if args.fit_minutes is not None and not s.steps and resume["epoch"] >= FIT_AFTER_EPOCHS:
            sys.exit(f"error: {args.resume} trains the recipe's epochs, not steps fitted to a time (its run had no "
                     "--fit-minutes): drop --fit-minutes")
        work = Path(args.resume).parent
        cache_dir = Path(args.data_cache or resume["data_cache"])
    else:
        seed = 0 if args.seed is None else args.seed
        s = Settings(seed=seed, **({} if args.epochs is None else {"epochs": args.epochs}))
        if args.quick:
            # early_share: a first part of two batches, so that a run can pause inside its epoch
            s = Settings(recipe=data.Recipe(train_per_lang=100), early_epochs=1, epochs=2, batch_size=16,
                         warmup_steps=5, early_share=0.1, seed=seed)
        if args.lr is not None:
            s = replace(s, lr=args.lr)
        if args.tone_weight is not None:
            if not args.tone_weight >= 0:
                sys.exit(f"error: --tone-weight {args.tone_weight}: give a weight of 0 or more")
            s = replace(s, tone_weight=args.tone_weight)
        if args.bf16:
            s = replace(s, bf16=True)
        if args.init:
            try:
                s = replace(s, init=init_record(Path(args.init), s))
            except (OSError, ValueError, KeyError) as e:
                sys.exit(f"error: --init {args.init}: {e}")
        work = Path(args.work or f"{out}.work")
        cache_dir = Path(args.data_cache) if args.data_cache else work / "data"
        if (work / CHECKPOINT).exists():  # an earlier run's; a matching feature cache stays
            log.info(f"removing an earlier run's {work / CHECKPOINT}")
            (work / CHECKPOINT).unlink()
        shutil.rmtree(work / "model", ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    allow_tf32(device)
    if args.fit_minutes is not None and args.epochs is not None:
        sys.exit("error: --fit-minutes chooses the steps; drop --epochs")
    limits = Limits(args.pause_after_minutes, args.pause_after_epochs, args.max_minutes, args.fit_minutes,
                    args.pause_after_steps)
    summary = run(out, work, s, device, args.workers, cache_dir=cache_dir, resume=resume, limits=limits,
                  funasr_modules_only=args.funasr_modules_only, t0=t0, profile_steps=args.profile_steps)
    if summary is None or args.no_eval:
        return 0
    from .evaluate import evaluate, record, summary_line

    result = evaluate(out, limit=4 if args.quick else None)
    record(out, result)
    print(f"{out}: held-out {summary_line(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
