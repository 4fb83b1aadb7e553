"""bench's speculation against plain decoding on a tiny float32 model: the simulated draft
re-aligns where the LLM parts from the ids it was made from (as a CTC draft re-aligns on text),
the verify-vs-single count, and the blocks' report (a smoke of the real path: not timed)."""

import pytest

from funasr_qwen4b.decoding import DecodeConfig, DecodeStats
from funasr_qwen4b.wiring import Draft

TOKENS = 40
PLAIN = DecodeConfig(loop_guard=False, ignore_eos=True, min_tokens=TOKENS, max_tokens=TOKENS, speculate="off")


@pytest.fixture(scope="module")
def tiny(full_bundle, clip):
    import mlx.core as mx

    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(full_bundle, decode=PLAIN)
    embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, mx.array(pipe.run(clip, decode=PLAIN).audio_embeds))
    return pipe, embeds, [tok for tok, _ in pipe.llm.tokens(embeds, PLAIN, TOKENS)]


def test_simulated_draft_realigns_where_the_llm_parts_from_it(tiny):
    """A draft made from ids that part from what the LLM writes at position 10 (as a 4-bit verify
    pass can resolve a near-tie otherwise): followed by position, it is lost from there on; the
    simulated draft goes on from plain greedy continued from the LLM's own token, and the passes
    take whole windows again. The ids stay plain greedy's either way."""
    from funasr_qwen4b.app.bench_mlx import SimulatedDraft, greedy_continuation

    pipe, embeds, plain = tiny
    vocab = pipe.llm.model.args.vocab_size
    parted = plain[:10] + [(i + 7) % vocab for i in plain[10:]]  # another branch from position 10
    spec_cfg = DecodeConfig(draft_tokens=8)
    runs = {}
    for name, draft in [("lost", Draft(parted, pipe.setup.tokenizer)),
                        ("realigned", SimulatedDraft(parted, 1.0, vocab, greedy_continuation(pipe.llm, embeds,
                                                                                             TOKENS)))]:
        stats = DecodeStats()
        ids = [tok for tok, _ in pipe.llm.tokens(embeds, spec_cfg, TOKENS, draft=draft, stats=stats)]
        assert ids == plain, name
        runs[name] = (stats, draft)
    lost, (realigned, draft) = runs["lost"][0], runs["realigned"]
    assert draft.realigned == 1 and draft.base == plain and draft.ids[11:] == plain[11:]  # re-derived at 10
    assert realigned.accepted == TOKENS - 1 - realigned.forwards  # every pass but its own token from the draft
    assert lost.accepted < 10 <= realigned.accepted - 20
    assert realigned.forwards < lost.forwards
    again = DecodeStats()  # a second decode finds the continuation it needs already derived
    spent = draft.spent
    assert [tok for tok, _ in pipe.llm.tokens(embeds, spec_cfg, TOKENS, draft=draft, stats=again)] == plain
    assert draft.spent == spent and again.forwards == realigned.forwards


def test_simulated_draft_keeps_at_its_rate():
    from funasr_qwen4b.app.bench_mlx import SimulatedDraft

    plain = list(range(100, 1100))
    d = SimulatedDraft(plain, 0.86, 5000, continue_from=lambda prefix: pytest.fail("nothing parted"))
    kept = sum(a == b for a, b in zip(d.ids, plain))
    assert 0.82 < kept / len(plain) < 0.90 and all(a in (b, b + 1) for a, b in zip(d.ids, plain))
    assert [d.after(i, k) for k, i in enumerate(plain[:5])] == [1, 2, 3, 4, 5]  # on plain greedy: no re-deriving


def test_verify_vs_single_counts_disagreements(tiny):
    """At float32 a pass over several positions gives one-position passes' argmax: none differ;
    an id that is not the argmax there is counted."""
    from funasr_qwen4b.app.bench_mlx import verify_vs_single

    pipe, embeds, plain = tiny
    v = verify_vs_single(pipe.llm, embeds, plain, 9)
    assert v == {"positions": TOKENS, "pass_positions": 9, "differ": 0, "share": 0.0}
    vocab = pipe.llm.model.args.vocab_size
    changed = [*plain[:20], (plain[20] + 1) % vocab, *plain[21:]]  # id 20 is not the argmax after plain[:20]
    assert verify_vs_single(pipe.llm, embeds, changed, 9)["differ"] >= 1


def test_speculation_vs_plain_reports_blocks(tiny, clip):
    from funasr_qwen4b.app import bench
    from funasr_qwen4b.app.bench_mlx import speculation_vs_plain

    pipe, _, _ = tiny
    r = speculation_vs_plain(pipe, clip, 12, 3, 0.86, warmup=0, table_plain_tok_s=1e9)
    assert r["blocks"]["n"] == 3 and r["blocks"]["order"] == ["speculative", "plain", "speculative"]
    assert len(r["ratio_over_blocks"]["blocks"]) == 3 and r["best_plain_tok_s"] == 1e9
    assert r["decode_speedup"] == r["speculative_tok_s"] / 1e9
    assert r["ids_identical"] and r["first_difference"] is None and r["verify_vs_single"]["differ"] == 0
    assert "more than the spread" in r["warning"]  # a stage table at 1e9 tok/s is far outside the blocks
    text = bench.to_markdown({"machine": {}, "settings": {"source": "tiny"},
                              "results": {"mlx": {"clips": {}, "speculation": r}}})
    assert "WARNING: the stage table's plain decode" in text and "3 interleaved blocks" in text
