"""Qwen3 as transformers runs it: audio rows placed into `inputs_embeds`,
greedy decoding with its KV cache. The twin of mlx_port/llm.py."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch
from transformers import AutoTokenizer, Qwen3ForCausalLM

from funasr_qwen4b import taps
from funasr_qwen4b.decoding import DecodeConfig, DecodeStats, process_logits
from funasr_qwen4b.prompt import Prompt

from .taps import TapRecorder


def load_tokenizer(path: str | Path):
    """The LLM's own tokenizer, read from its Hugging Face files by transformers (both twins alike)."""
    return AutoTokenizer.from_pretrained(str(path))


class Qwen3:
    def __init__(self, model: Qwen3ForCausalLM):
        self.model = model.eval()

    @classmethod
    def load(cls, path: str | Path) -> "Qwen3":
        """A Hugging Face Qwen3 directory, in float32."""
        return cls(Qwen3ForCausalLM.from_pretrained(str(path), dtype=torch.float32))

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @torch.no_grad()
    def embed(self, ids: list[int]) -> torch.Tensor:
        """[len(ids), hidden]"""
        return self.model.get_input_embeddings()(torch.tensor(ids, dtype=torch.long))

    @torch.no_grad()
    def inputs_embeds(self, prompt: Prompt, audio: torch.Tensor | None, rec: TapRecorder | None = None) -> torch.Tensor:
        """[1, L, hidden]: prefix text, audio rows [T, hidden], suffix text."""
        parts = [self.embed(prompt.prefix_ids)]
        if audio is not None:
            parts.append(audio.to(parts[0].dtype))
        parts.append(self.embed(prompt.suffix_ids))
        embeds = torch.cat(parts)[None]
        if rec is not None:
            rec.put(taps.LLM_INPUTS_EMBEDS, embeds, audio)
        return embeds

    @torch.no_grad()
    def tokens(self, inputs_embeds: torch.Tensor, cfg: DecodeConfig, max_tokens: int,
               rec: TapRecorder | None = None, *, stats: DecodeStats | None = None) -> Iterator[tuple[int, float]]:
        """Greedy ids from `inputs_embeds` [1, L, hidden], one at a time (at most
        `max_tokens`) with their log-probabilities, with transformers' KV cache."""
        names = [t for t in taps.llm_taps(self.num_layers) if t not in (taps.LLM_INPUTS_EMBEDS, taps.LLM_LOGITS)]
        if rec is None:
            out = self.model(inputs_embeds=inputs_embeds, use_cache=True)
        else:
            with rec.hooks(self.model, names, prefix=taps.LLM):
                out = self.model(inputs_embeds=inputs_embeds, use_cache=True)
            # isolated input of the logits: the final norm's output, last position
            rec.put(taps.LLM_LOGITS, out.logits[0, -1], torch.from_numpy(rec.outputs[taps.LLM_NORM][-1]))
        yield from greedy_ids(out, lambda nxt, o: self.model(input_ids=torch.tensor([[nxt]]),
                                                            past_key_values=o.past_key_values, use_cache=True),
                              cfg, max_tokens, stats)


def greedy_ids(out, step: Callable, cfg: DecodeConfig, max_tokens: int,
               stats: DecodeStats | None = None) -> Iterator[tuple[int, float]]:
    """Greedy ids after the forward `out` (at most `max_tokens`), each with its log-probability
    under the logits it was picked from: plain argmax unless a penalty applies; `step(id, out)`
    is the next one-token forward on the cache."""
    generated: list[int] = []
    while len(generated) < max_tokens:
        logits = out.logits[0, -1].float()
        if cfg.penalised:
            logits = torch.from_numpy(process_logits(generated, logits.numpy(), cfg))
        nxt = int(torch.argmax(logits))
        yield nxt, float(torch.log_softmax(logits, -1)[nxt])
        generated.append(nxt)
        if len(generated) == max_tokens:
            return
        if stats is not None:
            stats.forwards += 1
        out = step(nxt, out)
