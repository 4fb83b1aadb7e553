"""A Fun-ASR-Nano with random (seeded) weights in transformers' native layout, the
`FunAudioLLM/Fun-ASR-Nano-2512-hf` kind of repository: written by transformers' own
`FunAsrNanoForConditionalGeneration.save_pretrained` (config.json + model.safetensors) and
`FunAsrNanoProcessor.save_pretrained` (feature extractor, Qwen's tokenizer, chat template).
torch and transformers are imported by the builder.
"""

from __future__ import annotations

from pathlib import Path

from .testing import QWEN3_TINY, qwen3_config, qwen_tokenizer

# The encoder as testing.TINY (3 transcription layers + 2 timestamp layers, d=64), the
# adaptor at the tiny Qwen3's width. transformers counts every SAN-M layer in
# num_hidden_layers (FunASR: num_blocks + tp_blocks).
NANO_HF_AUDIO_TINY = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=5,
                          num_timestamp_prediction_layers=2, fsmn_kernel_size=11)
NANO_HF_ADAPTOR_TINY = dict(hidden_size=QWEN3_TINY["hidden_size"], intermediate_size=QWEN3_TINY["hidden_size"] // 4,
                            num_attention_heads=4, num_hidden_layers=2, projector_hidden_size=128)
# The published repository's transcription prompt, as a chat template over transformers'
# content items (audio, optional context text, keywords, language): FunASRNano's ChatML.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% set texts = message['content'] | selectattr('type', 'equalto', 'text') | list %}"
    "{% set keywords = message['content'] | selectattr('type', 'equalto', 'keywords') | list %}"
    "{% set languages = message['content'] | selectattr('type', 'equalto', 'language') | list %}"
    "{% if texts or keywords %}请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n\n\n"
    "**上下文信息：**\n\n\n{% for t in texts %}{{ t['text'] }}\n{% endfor %}"
    "{% if keywords %}热词列表：[{{ keywords | map(attribute='keywords') | sum(start=[]) | join(', ') }}]\n{% endif %}"
    "{% endif %}"
    "语音转写{% if languages %}成{{ languages[0]['language'] }}{% endif %}："
    "{% for c in message['content'] | selectattr('type', 'equalto', 'audio') %}<|object_ref_start|>{% endfor %}"
    "{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def nano_hf_config(audio: dict = NANO_HF_AUDIO_TINY, adaptor: dict = NANO_HF_ADAPTOR_TINY, **text_dims):
    """A FunAsrNanoConfig: SAN-M encoder, adaptor and a Qwen3 text model (Qwen3-0.6B's
    conventions: tied embeddings, the real vocabulary) at the given dimensions."""
    from transformers import FunAsrNanoConfig
    from transformers.models.fun_asr_nano.configuration_fun_asr_nano import (
        FunAsrNanoAdaptorConfig, FunAsrNanoEncoderConfig)

    text = qwen3_config(**text_dims)
    return FunAsrNanoConfig(audio_config=FunAsrNanoEncoderConfig(**audio).to_dict(),
                            adaptor_config=FunAsrNanoAdaptorConfig(**adaptor).to_dict(),
                            text_config=text.to_dict(), tie_word_embeddings=True)


def make_nano_hf_dir(out: str | Path, *, seed: int = 0, config=None) -> Path:
    """Write a Fun-ASR-Nano `-hf` repository (random, seeded) with transformers' classes; returns it."""
    import torch
    from transformers import FunAsrNanoForConditionalGeneration
    # The classes themselves: the package's lazy names stand in for ones whose optional
    # backend (torchaudio, for computing features) is missing; saving needs none.
    from transformers.models.fun_asr_nano.feature_extraction_fun_asr_nano import FunAsrNanoFeatureExtractor
    from transformers.models.fun_asr_nano.processing_fun_asr_nano import FunAsrNanoProcessor

    torch.manual_seed(seed)
    model = FunAsrNanoForConditionalGeneration(config or nano_hf_config())
    with torch.no_grad():  # norms away from 1/0 and biases away from 0, so a port that drops one is caught
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            elif name.startswith("model.language_model."):
                # Wider than transformers' 0.02: greedy ids then change from step to step, so
                # a decoding that goes wrong after the first token shows.
                p.normal_(0.0, 0.3)
    out = Path(out)
    model.save_pretrained(out)
    processor = FunAsrNanoProcessor(feature_extractor=FunAsrNanoFeatureExtractor(return_attention_mask=True),
                                    tokenizer=qwen_tokenizer(), chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out
