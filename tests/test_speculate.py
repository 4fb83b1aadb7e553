"""Speculative decoding with the CTC transcript as the draft: lossless (the ids of
plain greedy decoding, which the reference computes), fewer LLM passes when the draft
is right, re-aligned after the LLM inserts punctuation or changes token boundaries;
and streaming that holds back only a tail that is actually repeating."""

import numpy as np
import pytest

from funasr_qwen4b.decoding import DecodeConfig, DecodeStats, decode_loop, repeating_tail
from funasr_qwen4b.reference.llm import load_tokenizer
from funasr_qwen4b.wiring import Draft

PLAIN = DecodeConfig(loop_guard=False, min_tokens=60, max_tokens=60, speculate="off")
SPEC = DecodeConfig(loop_guard=False, min_tokens=60, max_tokens=60, speculate="ctc")


class CharTokenizer:
    """One id per character: decode is exact, so hand cases read as text."""

    def __init__(self, alphabet: str):
        self.alphabet = alphabet

    def encode(self, text, add_special_tokens=False):
        return [self.alphabet.index(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.alphabet[i] for i in ids)


def test_draft_goes_on_by_text_not_by_token(qwen_dir):
    tok = load_tokenizer(qwen_dir)
    one = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    draft = Draft.build("开放时间早上九点", tok)
    assert draft.after(draft.ids[0], 0) == 1  # agreement
    (colon,) = one("：")
    assert draft.after(colon, 2) == 2  # inserted punctuation: the draft token is still next
    (hello,) = one("Hello")
    assert draft.after(hello, 1) == 2  # a replaced token is passed over
    assert draft.after(hello, len(draft.ids)) == len(draft.ids)  # the draft has run out
    (m, y), (cap_my,), phone = one("m") + one("y"), one("My"), one(" phone")
    spelled = Draft([m, y, *phone], tok)
    assert spelled.after(cap_my, 0) == 2  # "My" spells the draft's "m" "y" (case and boundaries differ)
    (comma,), (wind,), (temp,) = one("，"), one("风"), one("气温")
    inner = Draft([wind, comma, temp], tok)
    assert inner.after(temp, 1) == 3  # the LLM left out the draft's "，": passed over to the text after it


def test_draft_ends_in_punctuation_and_the_stop_id(qwen_dir):
    """The LLM ends a sentence with punctuation of its script and then a stop id; the draft
    guesses both (one pass can then verify an utterance's whole ending). Inserted punctuation
    leaves the guesses where they were; text the draft lacks ends the draft (guessed after
    every token of it, the ending would turn each pass into a miss)."""
    tok = load_tokenizer(qwen_dir)
    one = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    stop = tok.eos_token_id
    for text, ending in [("今天有风", "。"), ("it is nine", "."), ("今天有风？", "")]:
        draft = Draft.build(text, tok, stop=stop)
        assert draft.ids[-1] == stop and tok.decode(draft.ids[:-1]) == text + ending
        assert draft.ends_by(len(draft.ids) - 1) and not draft.ends_by(len(draft.ids) - 2)
    assert Draft.build("今天有风", tok).ids == one("今天有风")  # no stop id (EOS ignored): no guesses
    assert Draft.build("", tok, stop=stop).ids == []
    draft = Draft.build("今天有风", tok, stop=stop)
    period = len(draft.ids) - 2
    (temp,), (comma,) = one("气温"), one("，")
    assert draft.after(comma, period) == period  # inserted punctuation
    assert draft.after(temp, period) == len(draft.ids)  # text the draft lacks
    assert draft.after(draft.ids[period], period) == period + 1


def test_streaming_holds_back_only_a_repeating_tail():
    cfg = DecodeConfig()
    assert repeating_tail([1, 2, 3, 4, 5], cfg) == 0
    assert repeating_tail([9, 1, 2, 1, 2, 1], cfg) == 3  # period 2: what follows the first "1 2"
    assert repeating_tail([5, 7, 7, 7], cfg) == 2
    tok = CharTokenizer("abcdefgh")
    consumed, deltas, first = [], [], []

    def source():
        for i in range(7):
            consumed.append(i)
            yield i, -0.1

    def on_text(delta):
        first.append(first[0] if first else len(consumed))
        deltas.append(delta)

    d = decode_loop(source(), cap=50, stop=[7], cfg=cfg, tokenizer=tok, on_text=on_text)
    # the first text arrives with the first token, not (loop_repeats - 1) * loop_max_ngram = 30 later
    assert first[0] == 1 and "".join(deltas) == tok.decode(d.ids) == "abcdefg"


def test_streamed_text_equals_final_text_under_loop_cuts():
    """Random token streams over a small alphabet loop often; whatever is cut was never streamed."""
    cfg = DecodeConfig()
    tok = CharTokenizer("abcdef")
    rng = np.random.default_rng(0)
    cuts = 0
    for _ in range(300):
        pattern = rng.integers(0, 5, size=int(rng.integers(1, 6))).tolist()
        ids = rng.integers(0, 5, size=int(rng.integers(0, 12))).tolist() + pattern * 12
        deltas = []
        logprobs = (-rng.random(len(ids))).tolist()
        d = decode_loop(zip(ids, logprobs), cap=400, stop=[5], cfg=cfg, tokenizer=tok, on_text=deltas.append)
        cuts += d.stop == "loop"
        assert "".join(deltas) == tok.decode(d.ids)
        assert d.logprobs == logprobs[:len(d.ids)]  # a loop cut takes its ids' log-probabilities too
    assert cuts > 250


@pytest.mark.parametrize("seconds", [2.0, 4.0])
def test_speculation_gives_plain_greedy_ids(full_bundle, clip, seconds):
    """Random weights decode to the cap: long, strict sequences; the CTC draft is mostly wrong."""
    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(full_bundle, decode=PLAIN)
    x = clip[: int(seconds * 16000)]
    plain = pipe.run(x, decode=PLAIN).decoded
    spec = pipe.run(x, decode=SPEC).decoded
    assert len(plain.ids) == 60 and spec.ids == plain.ids
    # each id's log-probability as plain decoding's one-position pass gives it (float32)
    np.testing.assert_allclose(spec.logprobs, plain.logprobs, rtol=0, atol=1e-4)
    assert len(set(plain.logprobs)) > 1 and max(plain.logprobs) <= 0
    assert plain.stats.drafted == 0 and spec.stats.drafted > 0
    assert spec.stats.forwards <= plain.stats.forwards
    assert spec.stats.voided > 0  # passes queued on bets that failed were thrown away, ids unchanged


def test_a_right_draft_takes_few_passes(full_bundle, clip):
    """With a draft that is the LLM's own output, a pass accepts a whole window."""
    import mlx.core as mx

    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(full_bundle, decode=PLAIN)
    audio = mx.array(pipe.run(clip, decode=PLAIN).audio_embeds)
    embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, audio)
    plain, plain_logprobs = zip(*pipe.llm.tokens(embeds, PLAIN, 60))
    draft = Draft(list(plain), pipe.setup.tokenizer)
    stats = DecodeStats()
    spec, spec_logprobs = zip(*pipe.llm.tokens(embeds, DecodeConfig(draft_tokens=16), 60, draft=draft, stats=stats))
    assert spec == plain
    # the accepted draft tokens' log-probabilities, read from the verify passes, are plain decoding's
    np.testing.assert_allclose(spec_logprobs, plain_logprobs, rtol=0, atol=1e-4)
    # after the prefill's token, three whole windows of 16 and the 7 left before the cap:
    # 16 + 16 + 16 + 7 accepted, each pass adding a token of its own; none verifies few enough
    # tokens to queue the next before its ids are read
    assert stats.forwards == 4 and stats.accepted == 55 and stats.voided == 0


@pytest.mark.accuracy
def test_demo_held_out_identical_and_fewer_passes(demo_heldout):
    """The demonstration model (MLX float32): the same ids with and without speculation on
    every held-out utterance, in fewer passes (the figures are in docs/decoding.md, with the
    command that measures them)."""
    h = demo_heldout
    assert len(h.entries) == 100 and h.pipe.setup.decode.speculative  # the bundle's own decoding
    tokens = forwards = accepted = computed = 0
    for e, s, p in zip(h.entries, h.speculative, h.plain, strict=True):
        spec, plain = s.decoded, p.decoded
        assert spec.ids == plain.ids, e.id
        tokens, forwards = tokens + len(spec.ids) - 1, forwards + spec.stats.forwards
        accepted += spec.stats.accepted
        computed += len(spec.ids) - 1 + (spec.stop == "eos")  # the stop id too: a pass computed it
    assert tokens / forwards > 3.0, (tokens, forwards)
    assert accepted / computed > 0.8, (accepted, computed)
