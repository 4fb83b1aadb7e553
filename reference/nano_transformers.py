"""Fun-ASR-Nano as transformers runs it: `FunAsrNanoForConditionalGeneration` and its feature
extractor, loaded from a `-hf` repository, hooked so that its activations carry the project's
tap names (FunASR's module names: the parity contract). The second oracle: what
`parity --oracle transformers` compares a Nano bundle against.

transformers holds the encoder's SAN-M layers in one list (FunASR: `encoders0`, `encoders`,
`tp_encoders`) with FunASR's `after_norm` / `tp_norm` as the `final_layernorm` of the last
transcription and the last timestamp layer: a layer's tap is what enters that norm, the norm's
tap what leaves it. Where transformers reads the model otherwise than FunASR, the trained
original, `load` can align it, and says so in its arguments:
- its feature extractor takes the waveform as given; FunASR's WavFrontend scales it to 16-bit
  range first (×32768), which this runner does too;
- its adaptor LayerNorms use the config's `layer_norm_eps` (1e-5), FunASR's 1e-12 (`adaptor_eps`);
- it writes every adaptor row into the prompt, FunASR's published config only the first
  ⌈T/8⌉ (`audio_rows`).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import quiet_funasr  # noqa: F401  (first: FunASR's import-time prints go to the log)
from funasr.utils import fbank as kaldi

from funasr_qwen4b import nano_taps, taps
from funasr_qwen4b.audio import SAMPLE_RATE
from funasr_qwen4b.decoding import DecodeConfig, DecodeStats
from funasr_qwen4b.wiring import LlmSetup, Output, timed

from .llm import greedy_ids, load_tokenizer
from .taps import TapRecorder, to_numpy

log = logging.getLogger(__name__)

# Each part's attention computed as FunASR computes it: matmul-softmax in the encoder and the
# adaptor, torch's sdpa in Qwen3 (FunASR builds its LLM with transformers' default).
ATTENTION = {"": "eager", "audio_config": "eager", "adaptor_config": "eager", "text_config": "sdpa"}


def encoder_tap_names(num_layers: int, tp_layers: int) -> list[tuple[str, str | None]]:
    """Per transformers encoder layer: its tap name, and the name of the norm it ends in (None)."""
    blocks = num_layers - tp_layers
    out = []
    for i in range(num_layers):
        name = taps.ENCODERS0 if i == 0 else taps.encoder_layer(i - 1) if i < blocks else taps.tp_layer(i - blocks)
        norm = taps.AFTER_NORM if i == blocks - 1 else taps.TP_NORM if i == num_layers - 1 else None
        out.append((name, norm))
    return out


class TransformersNano:
    """transformers' Fun-ASR-Nano with the project's prompt and decoding rules (`setup`)."""

    def __init__(self, model, feature_extractor, setup: LlmSetup,
                 audio_rows: Callable[[int], int] | None = None):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.setup = setup
        self.audio_rows = audio_rows

    @classmethod
    def load(cls, hf_dir: str | Path, template: str, decode: DecodeConfig = DecodeConfig(), *,
             adaptor_eps: float | None = None, audio_rows: Callable[[int], int] | None = None) -> "TransformersNano":
        """A -hf directory in float32. `adaptor_eps`: the adaptor LayerNorms' eps instead of the
        config's; `audio_rows(frames)`: how many adaptor rows the prompt takes (None: all, as
        transformers does); `template`: the prompt, one audio slot."""
        from transformers import FunAsrNanoForConditionalGeneration
        # The class itself: the package's lazy name stands in for it when torchaudio, which its
        # own fbank call needs, is missing; `features` computes the fbank as that call does.
        from transformers.models.fun_asr_nano.feature_extraction_fun_asr_nano import FunAsrNanoFeatureExtractor

        log.info("transformers: FunAsrNanoForConditionalGeneration from %s (float32)", hf_dir)
        model = FunAsrNanoForConditionalGeneration.from_pretrained(str(hf_dir), dtype=torch.float32,
                                                                   attn_implementation=ATTENTION)
        if adaptor_eps is not None:
            for m in model.model.multi_modal_projector.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.eps = adaptor_eps
        fe = FunAsrNanoFeatureExtractor.from_pretrained(str(hf_dir))
        return cls(model, fe, LlmSetup.build(load_tokenizer(hf_dir), template, decode), audio_rows)

    def features(self, samples: np.ndarray, rec: TapRecorder | None = None) -> torch.Tensor:
        """16 kHz mono float samples → [T', n_mels × lfr]: the extractor's Kaldi fbank call (torchaudio's
        `compliance.kaldi.fbank` with its options; FunASR's `utils.fbank` is that function, or
        kaldi-native-fbank where torchaudio is missing) on the 16-bit-range waveform, then its LFR."""
        fe = self.feature_extractor
        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)) * (1 << 15)
        fbank = kaldi.fbank(waveform[None], num_mel_bins=fe.feature_size, frame_length=fe.frame_length,
                            frame_shift=fe.frame_shift, sample_frequency=fe.sampling_rate, window_type=fe.window,
                            dither=0.0)
        lfr = fe._apply_lfr(fbank)
        if rec is not None:
            rec.put(taps.FBANK, fbank)
            rec.put(taps.LFR, lfr, fbank)
            rec.put(taps.CMVN, lfr, lfr)  # no CMVN: the -hf layout has none, nor has the published model
        return lfr

    @contextlib.contextmanager
    def _hooks(self, rec: TapRecorder | None) -> Iterator[dict]:
        """While inside: the adaptor's output and the LLM's input embeddings kept (`seen`), and
        with `rec` the encoder, adaptor and LLM-prefill taps under the project's names."""
        seen: dict[str, torch.Tensor] = {}
        projector = self.model.model.multi_modal_projector
        lm = self.model.model.language_model
        handles = [
            projector.register_forward_hook(lambda _, args, out: seen.__setitem__("audio", out)),
            lm.register_forward_pre_hook(lambda _, args, kwargs: seen.__setitem__("inputs_embeds",
                                                                                  kwargs["inputs_embeds"]),
                                         with_kwargs=True),
        ]

        def on(module, name: str):
            def hook(_, args, output):
                out = output[0] if isinstance(output, tuple) else output
                rec.put(name, out, args[0].clone())
                seen[name] = out
            handles.append(module.register_forward_hook(hook))

        if rec is not None:
            audio = self.model.model.audio_tower
            cfg = audio.config
            for layer, (name, norm) in zip(audio.layers, encoder_tap_names(cfg.num_hidden_layers,
                                                                            cfg.num_timestamp_prediction_layers)):
                if norm is None:
                    on(layer, name)
                    continue

                # The layer's tap is what enters its final norm; its input is the layer's.
                def enter(_, args, name=name):
                    seen[f"{name}:input"] = args[0].clone()

                def leave(_, args, output, name=name, norm=norm):
                    rec.put(name, args[0], seen.pop(f"{name}:input"))
                    rec.put(norm, output, args[0].clone())
                handles.append(layer.register_forward_pre_hook(enter))
                handles.append(layer.final_layernorm.register_forward_hook(leave))
            on(projector.linear_1, nano_taps.NANO_LINEAR1)
            on(projector.linear_2, nano_taps.NANO_LINEAR2)
            for i, layer in enumerate(projector.layers):
                on(layer, nano_taps.nano_block(i))
            for i, layer in enumerate(lm.layers):
                on(layer, taps.llm_layer(i))
            on(lm.norm, taps.LLM_NORM)
        try:
            yield seen
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def _prefill(self, feats: torch.Tensor, setup: LlmSetup, rec: TapRecorder | None):
        """The prompt with its audio rows through the model, tapped: transformers' own splicing
        (every row) or, with `audio_rows`, the first rows written where its audio tokens are.
        Returns the model's output and the audio rows the prompt took."""
        mask = torch.ones(feats.shape[:2], dtype=torch.long)
        model, token = self.model, self.model.config.audio_token_id
        frames = feats.shape[1]
        rows = frames if self.audio_rows is None else self.audio_rows(frames)
        ids = torch.tensor([setup.prompt.prefix_ids + [token] * rows + setup.prompt.suffix_ids])
        with self._hooks(rec) as seen:
            if self.audio_rows is None:
                out = model(input_ids=ids, input_features=feats, input_features_mask=mask, use_cache=True)
            else:
                audio = model.get_audio_features(feats, mask).pooler_output[:rows]
                embeds = model.get_input_embeddings()(ids)
                embeds = embeds.masked_scatter((ids == token)[..., None].expand_as(embeds), audio)
                out = model(inputs_embeds=embeds, use_cache=True)
        audio = seen["audio"][0, :rows]
        if rec is not None:
            rec.put(taps.ENCODER_INPUT, feats, feats)
            rec.put(taps.LLM_INPUTS_EMBEDS, seen["inputs_embeds"], audio)
            rec.put(taps.LLM_LOGITS, out.logits[0, -1], seen[taps.LLM_NORM][0, -1])
        return out, audio

    @torch.no_grad()
    def _tokens(self, out, cfg: DecodeConfig, max_tokens: int, stats: DecodeStats) -> Iterator[int]:
        """Greedy ids after the prefill `out`, one forward a token with transformers' cache
        (the reference Qwen3's rules)."""
        yield from greedy_ids(out, lambda nxt, o: self.model(input_ids=torch.tensor([[nxt]]), cache=o.cache,
                                                            use_cache=True), cfg, max_tokens, stats)

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None,
            on_text: Callable[[str], None] | None = None, *, decode: DecodeConfig | None = None,
            template: str | None = None) -> Output:
        """One utterance (16 kHz mono float) through transformers' model: the reference
        Pipeline's `run` for a Nano bundle, against the other oracle."""
        t: dict[str, float] = {}
        setup = self.setup.with_decode(decode).with_template(template)
        with timed(t, "frontend"):
            feats = self.features(samples, rec)[None]
        out = Output(None, timings=t)
        with timed(t, "encoder+adaptor+prefill"):
            first, audio = self._prefill(feats, setup, rec)
        out.audio_embeds = to_numpy(audio)
        seconds = samples.size / SAMPLE_RATE
        stats = DecodeStats()
        tokens = self._tokens(first, setup.decode, setup.decode.token_cap(seconds) + 1, stats)
        setup.transcribe(tokens, seconds, out, on_text, rec, stats)
        return out
