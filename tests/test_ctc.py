"""Greedy CTC: hand-derived cases, and ids identical to FunASR's own
SenseVoiceSmall.inference on the same audio."""

import numpy as np
import torch

from funasr_qwen4b import ctc


def test_collapse_hand_derived():
    assert ctc.collapse(np.array([0, 5, 5, 0, 5, 7, 7, 7, 0, 0, 3]), blank_id=0) == [5, 5, 7, 3]
    assert ctc.collapse(np.array([0, 0, 0]), blank_id=0) == []
    assert ctc.collapse(np.array([], dtype=np.int64), blank_id=0) == []
    assert ctc.collapse(np.array([2, 2, 1, 2]), blank_id=1) == [2, 2]


def test_decode_splits_tags_from_text():
    frames = np.array([24, 25, 26, 27, 0, 9, 9, 0, 9, 4])
    r = ctc.decode(frames, blank_id=0, n_query=4)
    assert r.tag_ids == [24, 25, 26, 27]
    assert r.text_ids == [9, 9, 4]
    assert r.ids == [24, 25, 26, 27, 9, 9, 4]  # FunASR's token_int: all frames
    assert r.text == "9 9 4"  # no tokenizer: ids are shown


def test_ids_match_funasr_inference(sv_dir, bundle, clip):
    """FunASR's SenseVoiceSmall.inference is the oracle for both paths."""
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.tokenizer.sentencepiece_tokenizer import SentencepiecesTokenizer

    from funasr_qwen4b.mlx_port.pipeline import Pipeline as MlxPipeline
    from funasr_qwen4b.reference.pipeline import Pipeline as RefPipeline
    from funasr_qwen4b.sources import SenseVoiceSource

    ref = RefPipeline.from_originals(sv_dir)
    src = SenseVoiceSource.from_dir(sv_dir)
    frontend = WavFrontend(cmvn_file=str(src.cmvn_file), lfr_m=7, lfr_n=6, dither=0.0)

    class Recording(SentencepiecesTokenizer):
        """inference() returns only text: catch the token_int it decodes."""

        seen = []

        def decode(self, ids):
            self.seen.append(list(ids))
            return super().decode(ids)

    tokenizer = Recording(bpemodel=str(src.bpemodel))
    results = ref.sensevoice.model.inference(
        [torch.from_numpy(clip.copy())], key=["clip"], tokenizer=tokenizer, frontend=frontend,
        language="zh", use_itn=False, device="cpu")
    upstream_ids = tokenizer.seen[0]
    upstream_text = results[0][0]["text"] if isinstance(results[0], list) else results[0]["text"]

    mine_ref = ref.run(clip).ctc
    mine_mlx = MlxPipeline.from_bundle(bundle).run(clip).ctc
    assert len(upstream_ids) > 10
    assert mine_ref.ids == upstream_ids
    assert mine_mlx.ids == upstream_ids
    assert SentencepiecesTokenizer(bpemodel=str(src.bpemodel)).decode(mine_mlx.ids) == upstream_text
    assert mine_mlx.tag_ids == mine_ref.tag_ids and len(mine_mlx.tags) == 4
