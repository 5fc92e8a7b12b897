"""Tiny random VLMs of the real architectures, built offline (tests, benchmarks, smoke runs).

``build_tiny(arch)`` returns ``(model, processor)`` made from the architecture's own config classes
(hidden 64, 2 LM layers, 2 vision layers) with a byte-level BPE tokenizer trained on the fly on domain
text (numbers, cards, actions, JSON answers; :mod:`vlmq.models.tiny.tokenizer`), the architecture's
special tokens, a PIL image processor (no torchvision needed) and a chat template in the
architecture's style (:mod:`vlmq.models.tiny.templates`).
``save_tiny(arch, dir)`` writes a folder that ``Policy.from_pretrained(dir)`` and
``AutoModelForImageTextToText.from_pretrained(dir)`` load through the real code path. Nothing is
downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlmq.models.arch import image_only_processor_class
from vlmq.models.tiny.templates import LLAVA_TEMPLATE, QWEN_TEMPLATE, SMOLVLM_TEMPLATE, chat_template
from vlmq.models.tiny.tokenizer import make_tokenizer

TINY_ARCHS = (
    "idefics3", "qwen2_vl", "qwen2_5_vl", "llava", "paligemma", "paligemma2",
    "smolvlm", "idefics2", "qwen3_vl", "llava_next", "llava_onevision", "mistral3", "gemma3",
)  # fmt: skip


def tiny_model_type(arch: str) -> str:
    """The HF ``model_type`` of a tiny arch (PaliGemma 2 is a ``paligemma`` with a Gemma 2 text model)."""
    return "paligemma" if arch == "paligemma2" else arch


_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def idefics3(
    smol: bool = False,
    image_size: int = 64,
    patch: int = 16,
    sf: int = 2,
    vision: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
    corpus: list[str] | None = None,
    vocab_size: int = 1024,
) -> tuple[Any, Any]:
    """``(Idefics3Config, Idefics3Processor)`` (``smol``: SmolVLM's classes, SmolVLM2's
    ``model_type``); ``corpus``/``vocab_size`` train the tokenizer."""
    from transformers import Idefics3Config, Idefics3Processor, SmolVLMConfig, SmolVLMProcessor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    config_cls, ip_cls = (
        (SmolVLMConfig, SmolVLMImageProcessorPil) if smol else (Idefics3Config, Idefics3ImageProcessorPil)
    )
    proc_cls = image_only_processor_class(SmolVLMProcessor) if smol else Idefics3Processor

    rows_cols = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    specials = ["<|endoftext|>", "<|im_start|>", "<pad>", "<image>", "<fake_token_around_image>"]
    specials += ["<global-img>", "<end_of_utterance>", *rows_cols]
    tok = make_tokenizer(
        specials,
        vocab_size=vocab_size,
        corpus=corpus,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    ip = ip_cls(
        do_resize=True,
        size={"longest_edge": image_size},
        do_image_splitting=False,
        max_image_size={"longest_edge": image_size},
    )
    proc = proc_cls(
        image_processor=ip,
        tokenizer=tok,
        image_seq_len=(image_size // patch) ** 2 // sf**2,
        chat_template=SMOLVLM_TEMPLATE,
    )
    vision_cfg = {**_VISION, **(vision or {})}
    text_cfg = dict(
        model_type="llama",
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **_TEXT,
    )
    text_cfg.update(text or {})
    cfg = config_cls(
        vision_config=dict(image_size=image_size, patch_size=patch, **vision_cfg),
        text_config=text_cfg,
        scale_factor=sf,
        image_token_id=proc.image_token_id,
        tie_word_embeddings=text_cfg["tie_word_embeddings"],
    )
    return cfg, proc


def build_smolvlm_sized(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Any]:
    """A random Idefics3 model with SmolVLM-256M's shapes (228 M params: SigLIP 768x12 at 512 px,
    64 image tokens; Llama 576x30, 9/3 heads, vocab 49280, tied embeddings) and the tiny tokenizer
    (its ids are a subset of the vocabulary). For cost benchmarks only: the weights are random."""
    from transformers import AutoModelForImageTextToText

    cfg, proc = idefics3(
        image_size=512,
        patch=16,
        sf=4,
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        text=dict(
            vocab_size=49280,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=8192,
            rope_theta=100000.0,
            tie_word_embeddings=True,
        ),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(cfg, dtype=dtype)
    model.generation_config.eos_token_id = proc.tokenizer.eos_token_id
    model.generation_config.pad_token_id = proc.tokenizer.pad_token_id
    model.eval()
    return model, proc


def _qwen(arch: str) -> tuple[Any, Any]:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    specials += ["<|image_pad|>", "<|video_pad|>"]
    tok = make_tokenizer(
        specials, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    ip = Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    from transformers import Qwen2VLProcessor

    proc = image_only_processor_class(Qwen2VLProcessor)(
        image_processor=ip, tokenizer=tok, chat_template=QWEN_TEMPLATE
    )
    c = tok.convert_tokens_to_ids
    text = dict(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        **_TEXT,
    )
    ids = dict(
        image_token_id=c("<|image_pad|>"),
        video_token_id=c("<|video_pad|>"),
        vision_start_token_id=c("<|vision_start|>"),
        vision_end_token_id=c("<|vision_end|>"),
    )
    if arch == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision = dict(
            depth=2,
            embed_dim=32,
            hidden_size=64,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        cfg = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    else:
        from transformers import Qwen2_5_VLConfig

        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        )
        cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    return cfg, proc


def _llava(image_size: int = 32, patch: int = 8) -> tuple[Any, Any]:
    from transformers import LlavaConfig, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tok = make_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    ip = LlavaImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    proc = LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=LLAVA_TEMPLATE,
    )
    cfg = LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            **_VISION,
            image_size=image_size,
            patch_size=patch,
            projection_dim=32,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tok),
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            **_TEXT,
        ),
        image_token_index=proc.image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    return cfg, proc


def _paligemma(gemma2: bool = False, image_size: int = 32, patch: int = 8) -> tuple[Any, Any]:
    """PaliGemma: SigLIP vision + Gemma text (``gemma2``: Gemma 2 with a sliding window shorter than a
    prompt, as PaliGemma 2), no chat template (the processor adds ``<bos>`` and ``"\\n"``; it also
    adds PaliGemma's 1,152 ``<locNNNN>``/``<segNNN>`` tokens to the vocabulary)."""
    from transformers import PaliGemmaConfig, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = make_tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"],
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    ip = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    ip.image_seq_length = (image_size // patch) ** 2
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    text = dict(
        model_type="gemma2" if gemma2 else "gemma",
        vocab_size=len(proc.tokenizer),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        head_dim=16,
        **{**_TEXT, "tie_word_embeddings": True},
    )
    if gemma2:
        text.update(sliding_window=8, query_pre_attn_scalar=16)
    cfg = PaliGemmaConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            **_VISION,
            image_size=image_size,
            patch_size=patch,
            vision_use_head=False,
        ),
        text_config=text,
        image_token_index=proc.image_token_id,
        vocab_size=len(proc.tokenizer),
        projection_dim=_TEXT["hidden_size"],
        hidden_size=_TEXT["hidden_size"],
        tie_word_embeddings=True,
    )
    return cfg, proc


def _text(tok: Any, model_type: str, **kw: Any) -> dict[str, Any]:
    """A tiny text config of ``model_type`` over ``tok``'s vocabulary."""
    return dict(
        model_type=model_type,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **{**_TEXT, **kw},
    )


def _chatml_tokenizer(*image_tokens: str, **named: Any) -> Any:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *image_tokens]
    return make_tokenizer(
        specials, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>", **named
    )


def _idefics2(image_size: int = 32, patch: int = 8, latents: int = 4) -> tuple[Any, Any]:
    from transformers import Idefics2Config, Idefics2Processor
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    image = "<fake_token_around_image>"
    tok = make_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>", image, "<end_of_utterance>"],
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "image_token": "<image>",
            "fake_image_token": image,
            "image_boundary_token": image,
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    ip = Idefics2ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": image_size, "shortest_edge": image_size}
    )
    template = chat_template("<image>", "", "<end_of_utterance>", "User:", "Assistant:")
    proc = Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=latents, chat_template=template)
    cfg = Idefics2Config(
        vision_config=dict(image_size=image_size, patch_size=patch, **_VISION),
        perceiver_config=dict(
            hidden_size=_TEXT["hidden_size"],
            resampler_n_latents=latents,
            resampler_depth=1,
            resampler_n_heads=2,
            resampler_head_dim=16,
            num_key_value_heads=1,
        ),
        text_config=_text(tok, "mistral"),
        image_token_id=proc.image_token_id,
        tie_word_embeddings=False,
    )
    return cfg, proc


def _qwen3_vl() -> tuple[Any, Any]:
    from transformers import Qwen3VLConfig, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = _chatml_tokenizer("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    ip = Qwen2VLImageProcessorPil(
        min_pixels=64 * 64, max_pixels=64 * 64, patch_size=16, merge_size=2, temporal_patch_size=2
    )
    proc = image_only_processor_class(Qwen3VLProcessor)(
        image_processor=ip, tokenizer=tok, chat_template=QWEN_TEMPLATE
    )
    c = tok.convert_tokens_to_ids
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
    }
    cfg = Qwen3VLConfig(
        text_config=dict(_text(tok, "qwen3_vl_text", head_dim=16), bos_token_id=None, rope_parameters=rope),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=_TEXT["hidden_size"],
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=16,
            deepstack_visual_indexes=[0],
        ),
        image_token_id=c("<|image_pad|>"),
        video_token_id=c("<|video_pad|>"),
        vision_start_token_id=c("<|vision_start|>"),
        vision_end_token_id=c("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    return cfg, proc


_PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def _llava_next(image_size: int = 32, patch: int = 8) -> tuple[Any, Any]:
    """LLaVA-NeXT (anyres: a base view + up to 4 crops of a 64 px grid) on a CLIP tower + Llama."""
    from transformers import LlavaNextConfig, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tok = make_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    ip = LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=_PINPOINTS,
    )
    proc = LlavaNextProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    cfg = LlavaNextConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            **_VISION,
            image_size=image_size,
            patch_size=patch,
            projection_dim=32,
        ),
        text_config=_text(tok, "llama"),
        image_token_index=proc.image_token_id,
        image_grid_pinpoints=_PINPOINTS,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    return cfg, proc


def _llava_onevision(image_size: int = 32, patch: int = 8) -> tuple[Any, Any]:
    """LLaVA-OneVision (anyres) on a SigLIP tower + Qwen2."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    tok = _chatml_tokenizer("<image>", "<video>")
    ip = LlavaOnevisionImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_grid_pinpoints=_PINPOINTS
    )
    proc = image_only_processor_class(LlavaOnevisionProcessor)(
        image_processor=ip,
        tokenizer=tok,
        num_image_tokens=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        chat_template=chat_template("<image>\n", "<|im_start|>", "<|im_end|>"),
    )
    cfg = LlavaOnevisionConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            **_VISION,
            image_size=image_size,
            patch_size=patch,
            vision_use_head=False,
        ),
        text_config=_text(tok, "qwen2"),
        image_token_index=proc.image_token_id,
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_PINPOINTS,
        vision_feature_select_strategy="full",
    )
    return cfg, proc


def _mistral3(image_size: int = 32, patch: int = 8) -> tuple[Any, Any]:
    """Mistral 3 (Pixtral tower, 2x2 patch merge) + Mistral."""
    from transformers import Mistral3Config
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    from vlmq.models.arch import import_processor

    PixtralProcessor = import_processor("PixtralProcessor")
    assert PixtralProcessor is not None

    specials = ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]
    tok = make_tokenizer(specials, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    ip = PixtralImageProcessorPil(
        size={"longest_edge": image_size}, patch_size={"height": patch, "width": patch}
    )
    template = (
        "<s>{% for m in messages %}{% if m['role'] == 'user' %}[INST]{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}[IMG]{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}[/INST]{% else %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{% endif %}</s>{% endif %}{% endfor %}"
    )
    proc = PixtralProcessor(
        image_processor=ip, tokenizer=tok, patch_size=patch, spatial_merge_size=2, chat_template=template
    )
    cfg = Mistral3Config(
        vision_config=dict(
            model_type="pixtral", **_VISION, image_size=image_size, patch_size=patch, head_dim=16
        ),
        text_config=_text(tok, "mistral", head_dim=16),
        image_token_index=tok.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        tie_word_embeddings=False,
    )
    return cfg, proc


def _gemma3(image_size: int = 32, patch: int = 8) -> tuple[Any, Any]:
    """Gemma 3: SigLIP tower, 2x2-pooled image tokens, Gemma 3 text (sliding + global layers)."""
    from transformers import Gemma3Config, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    image = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    tok = make_tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", *image],
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"boi_token": image[0], "eoi_token": image[1], "image_token": image[2]},
    )
    ip = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size})
    n_tokens = ((image_size // patch) // 2) ** 2
    template = "{{ bos_token }}" + chat_template(
        "<start_of_image>", "<start_of_turn>", "<end_of_turn>", "user", "model"
    )
    proc = Gemma3Processor(
        image_processor=ip, tokenizer=tok, image_seq_length=n_tokens, chat_template=template
    )
    c = tok.convert_tokens_to_ids
    cfg = Gemma3Config(
        text_config=_text(tok, "gemma3_text", head_dim=16, sliding_window=8, query_pre_attn_scalar=16),
        vision_config=dict(
            model_type="siglip_vision_model",
            **_VISION,
            image_size=image_size,
            patch_size=patch,
            vision_use_head=False,
        ),
        mm_tokens_per_image=n_tokens,
        boi_token_index=c(image[0]),
        eoi_token_index=c(image[1]),
        image_token_index=c(image[2]),
        tie_word_embeddings=False,
    )
    return cfg, proc


_BUILDERS: dict[str, Any] = {
    "idefics3": idefics3,
    "smolvlm": lambda: idefics3(smol=True),
    "idefics2": _idefics2,
    "qwen2_vl": lambda: _qwen("qwen2_vl"),
    "qwen2_5_vl": lambda: _qwen("qwen2_5_vl"),
    "qwen3_vl": _qwen3_vl,
    "llava": _llava,
    "llava_next": _llava_next,
    "llava_onevision": _llava_onevision,
    "mistral3": _mistral3,
    "gemma3": _gemma3,
    "paligemma": _paligemma,
    "paligemma2": lambda: _paligemma(gemma2=True),
}


def build_tiny(arch: str, seed: int = 0) -> tuple[nn.Module, Any]:
    """A tiny random ``(model, processor)`` of ``arch`` (one of :data:`TINY_ARCHS`), seeded."""
    from transformers import AutoModelForImageTextToText

    if arch not in _BUILDERS:
        raise ValueError(f"unknown tiny arch {arch!r}; choose from {TINY_ARCHS}")
    cfg, proc = _BUILDERS[arch]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(cfg)
    tok = proc.tokenizer
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.eval()
    return model, proc


def save_tiny(arch: str, directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a tiny model + processor folder (loadable by ``Policy.from_pretrained``); returns it."""
    out = Path(directory)
    model, proc = build_tiny(arch, seed=seed)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out
