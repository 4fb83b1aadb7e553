"""Batches: several utterances through the MLX pipeline at once give, row by row,
the ids each gives alone (MLX float32, the strict tier), whatever the batch size, the
lengths and where each row stops; each row streams and can be stopped on its own."""

from dataclasses import replace

import numpy as np
import pytest

from funasr_qwen4b.audio import SAMPLE_RATE, load_audio
from funasr_qwen4b.decoding import DecodeConfig, Stopped
from funasr_qwen4b.manifest import load_manifest
from tests.conftest import DATASETS as DATA
# random weights decode to the cap, 12 tokens a second here: long rows of different lengths
LONG = DecodeConfig(loop_guard=False, speculate="off", min_tokens=1, tokens_per_second=12.0)


def synth_clips() -> list[np.ndarray]:
    """The CI random-weight sets (14 clips, 2.4 to 63 s), pieces over 30 s cut off."""
    out = []
    for name in ("zh_synth", "en_synth"):
        out += [load_audio(e.audio)[: 30 * SAMPLE_RATE] for e in load_manifest(DATA / name / "test.jsonl")]
    return out


def ids(out) -> list[int]:
    return out.decoded.ids


@pytest.fixture(scope="module")
def pipe(full_bundle):
    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    return Pipeline.from_bundle(full_bundle, decode=LONG)


@pytest.mark.parametrize("decode", [LONG, replace(LONG, repetition_penalty=1.3, no_repeat_ngram=3)],
                         ids=["to-the-cap", "penalised"])
def test_random_weights_batched_ids_equal_unbatched(pipe, decode):
    """14 clips in batches of 4 (the last of 2): every row's ids, CTC ids and adaptor rows as alone."""
    clips = synth_clips()
    alone = [pipe.run(x, decode=decode) for x in clips]
    assert sum(len(ids(o)) for o in alone) > 500 and len({len(ids(o)) for o in alone}) > 3  # long, ragged
    batched = []
    for at in range(0, len(clips), 4):
        batched += pipe.run_batch(clips[at: at + 4], decode=decode)
    for i, (a, b) in enumerate(zip(alone, batched)):
        assert ids(b) == ids(a) and b.decoded.stop == a.decoded.stop, i
        np.testing.assert_allclose(b.decoded.logprobs, a.decoded.logprobs, rtol=0, atol=1e-4, err_msg=str(i))
        assert b.ctc.ids == a.ctc.ids, i
        np.testing.assert_allclose(b.audio_embeds, a.audio_embeds, rtol=1e-4, atol=1e-4)
        assert b.decoded.stats.forwards == a.decoded.stats.forwards == len(ids(a)) - 1


@pytest.mark.accuracy  # minutes on 2 cores: CI's accuracy step runs it
def test_demo_held_out_batched_ids_equal_unbatched(demo_heldout):
    """The demonstration model on its 100 held-out utterances, batches of 7 (the last of 2): rows end
    at their own stop token, from 1.2 to 5.7 s of audio."""
    h = demo_heldout
    for e, a, b in zip(h.entries, h.plain, h.batched(7), strict=True):
        assert ids(b) == ids(a) and b.text == a.text and b.decoded.stop == "eos", e.id


def test_rows_stream_and_stop_on_their_own(pipe):
    """Each row streams its own text; a row whose listener stops it ends there, the others go on."""
    clips = synth_clips()[:3]
    alone = [pipe.run(x) for x in clips]
    deltas = [[], [], []]

    def stop_after_two(delta):
        deltas[1].append(delta)
        if len(deltas[1]) == 2:
            raise Stopped()

    got = pipe.run_batch(clips, [deltas[0].append, stop_after_two, deltas[2].append])
    for k in (0, 2):
        assert ids(got[k]) == ids(alone[k]) and "".join(deltas[k]) == got[k].text == alone[k].text
    assert got[1].decoded.stop == "stopped" and len(deltas[1]) == 2
    assert ids(got[1]) == ids(alone[1])[: len(ids(got[1]))] and len(ids(got[1])) < len(ids(alone[1]))


def test_transcriber_batch_equals_one_at_a_time(full_bundle):
    """transcribe_batch over inputs of which one is split into pieces (63 s): the same results as
    transcribe, streamed texts in order, with a batch size that divides nothing."""
    from funasr_qwen4b import Transcriber

    t = Transcriber.load(full_bundle, decode=LONG)
    entries = load_manifest(DATA / "zh_synth" / "test.jsonl")
    paths = sorted((e.audio for e in entries), key=lambda p: -p.stat().st_size)[:5]  # the 63 s clip first
    alone = [t.transcribe(p) for p in paths]
    assert max(r["chunks"] for r in alone) > 1
    for size in (3,):
        deltas = [[] for _ in paths]
        got = t.transcribe_batch(paths, batch_size=size, on_texts=[d.append for d in deltas])
        for a, b, d in zip(alone, got, deltas):
            assert b["text"] == a["text"] == "".join(d)
            assert [s["tokens"] for s in b["segments"]] == [s["tokens"] for s in a["segments"]]
            assert (b["chunks"], b["stop"], b["forwards"]) == (a["chunks"], a["stop"], a["forwards"])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        t.transcribe_batch(paths, batch_size=0)
    with pytest.raises(ValueError, match="on_texts has 1 entries for 5 inputs"):
        t.transcribe_batch(paths, on_texts=[print])


def test_ordered_stream_releases_pieces_in_order():
    from funasr_qwen4b.app.transcriber import OrderedStream, join_texts

    out = []
    s = OrderedStream(out.append, 3)
    s.piece(2)("c")  # the last piece decodes first: held
    s.piece(1)("b1")
    assert out == []
    s.piece(0)("a")
    assert out == ["a"]
    s.done(2)
    assert out == ["a"]
    s.done(0)  # piece 1 goes out; piece 2, ended, follows at once when piece 1 ends
    assert out == ["a", " b1"]  # ASCII words across pieces: a space between, as join_texts joins
    s.piece(1)(" b2 ")
    s.done(1)
    assert "".join(out) == join_texts(["a", "b1 b2 ", "c"]) == "a b1 b2 c"


def test_cli_batch_size(full_bundle, capsys):
    from funasr_qwen4b.app.cli import main

    paths = [str(e.audio) for e in load_manifest(DATA / "en_synth" / "test.jsonl")][:4]
    assert main(["transcribe", *paths, "-m", str(full_bundle), "--speculate", "off"]) == 0
    one = capsys.readouterr().out
    assert main(["transcribe", *paths, "-m", str(full_bundle), "--batch-size", "3"]) == 0
    assert capsys.readouterr().out == one and len(one.splitlines()) == 4
    assert main(["transcribe", *paths, "-m", str(full_bundle), "--batch-size", "2", "--stream"]) == 2
    assert "--stream prints one input's text" in capsys.readouterr().err
    assert main(["transcribe", paths[0], "-m", str(full_bundle), "--batch-size", "0"]) == 2


def test_quantized_layers_take_a_batchs_rows_as_one_product(monkeypatch):
    """A quantized Qwen3 as Qwen3 wraps it: each quantized product gets all rows of a [B, L, K]
    input as one [1, B·L, K] product (MLX's CUDA backend reads the weight once per leading row
    otherwise), and computes what MLX's own quantized layers compute on the same weights."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models.qwen3 import Model, ModelArgs

    from funasr_qwen4b.mlx_port.llm import Qwen3, RowsQuantizedEmbedding, RowsQuantizedLinear

    args = ModelArgs(model_type="qwen3", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, vocab_size=256,
                     max_position_embeddings=512, rope_theta=1e6, tie_word_embeddings=True)
    mx.random.seed(0)
    model = Model(args)
    nn.quantize(model, group_size=64, bits=4)
    mx.eval(model.parameters())
    x = mx.random.normal((3, 2, 64))

    def rows(m):  # [3, 2, K] for the layer's input width K
        return mx.random.normal((3, 2, m.weight.shape[1] * 32 // m.bits), key=mx.random.key(1))

    own = [(m, m(rows(m))) for _, m in model.named_modules() if type(m) is nn.QuantizedLinear]
    head = model.model.embed_tokens.as_linear(x)
    llm = Qwen3(model)
    kinds = {type(m) for _, m in model.named_modules() if "Quantized" in type(m).__name__}
    assert kinds == {RowsQuantizedLinear, RowsQuantizedEmbedding}
    assert len(own) == 2 * 7  # q, k, v, o, gate, up, down in each layer
    for m, want in own:
        assert mx.array_equal(m(rows(m)), want)
    assert mx.array_equal(llm.logits(x), head) and llm.logits(x[0, 0]).shape == (256,)
    shapes = []
    qmm = mx.quantized_matmul
    monkeypatch.setattr(mx, "quantized_matmul", lambda a, *r, **k: shapes.append(a.shape) or qmm(a, *r, **k))
    model(mx.array([[1], [2], [3]]))  # a batch of three rows, one position each
    assert shapes and {s[0] for s in shapes} == {1} and {s[1] for s in shapes} == {3}
