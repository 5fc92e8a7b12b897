"""Per-architecture knowledge, in one table. No other vlmq code knows architectures.

For every supported ``model_type`` an :class:`ArchSpec` says

- where the language model lives (``lm_path``) and which modules are the vision side (``vision_paths``);
- which modules LoRA targets (a regex over module names that matches the *language model only*; the
  vision towers also have ``q_proj``/``fc1`` layers, so a plain list of names would LoRA them too);
- how the processor wants its images (nested per sample or flat) and which inputs carry pixels;
- how to compute image features for a subset of a batch, so that :class:`~vlmq.models.policy.Policy`
  can cache them per image and feed them back through ``mm_encoder_outputs``;
- the chat-prompt fallback format (used only when the processor has no chat template) and the
  end-of-turn token the model emits after its answer.

Supported: ``idefics3`` (SmolVLM v1), ``qwen2_vl``, ``qwen2_5_vl``, ``llava``, ``paligemma``
(PaliGemma 1 and 2). PaliGemma is a prefix-LM: image and prompt attend to each other both ways, the
answer causally. Its processor marks the answer with ``token_type_ids`` 1 only when given a ``suffix``;
here the response is tokenised on its own and appended (:meth:`Policy.encode`), so ``prefix_lm`` tells
the policy to mark those tokens itself, exactly as ``generate`` marks the tokens it appends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

_LM_PROJ = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

ImageFeatureFn = Callable[[nn.Module, dict[str, torch.Tensor], Sequence[int]], list[torch.Tensor]]


def _idefics3_features(
    inner: nn.Module, batch: dict[str, torch.Tensor], idx: Sequence[int]
) -> list[torch.Tensor]:
    """Idefics3/SmolVLM: ``pixel_values [B, n_tiles, 3, H, W]``; features per sample (all its tiles)."""
    sel = torch.as_tensor(list(idx), device=batch["pixel_values"].device)
    pv = batch["pixel_values"].index_select(0, sel)
    pam = batch.get("pixel_attention_mask")
    pam = None if pam is None else pam.index_select(0, sel)
    out = inner.get_image_features(pv, pam, return_dict=True)
    return list(out.pooler_output)


def _qwen2vl_features(
    inner: nn.Module, batch: dict[str, torch.Tensor], idx: Sequence[int]
) -> list[torch.Tensor]:
    """Qwen2(.5)-VL: flattened patches ``[sum_i n_i, D]`` + ``image_grid_thw [n_images, 3]``."""
    thw = batch["image_grid_thw"]
    sizes = thw.prod(-1).tolist()
    starts = [0]
    for s in sizes:
        starts.append(starts[-1] + int(s))
    pv = torch.cat([batch["pixel_values"][starts[i] : starts[i + 1]] for i in idx], dim=0)
    sel = torch.as_tensor(list(idx), device=thw.device)
    out = inner.get_image_features(pv, thw.index_select(0, sel), return_dict=True)
    return list(out.pooler_output)


def _llava_features(
    inner: nn.Module, batch: dict[str, torch.Tensor], idx: Sequence[int]
) -> list[torch.Tensor]:
    """LLaVA: ``pixel_values [B, 3, H, W]``; vision layer/strategy come from the model config."""
    sel = torch.as_tensor(list(idx), device=batch["pixel_values"].device)
    out = inner.get_image_features(pixel_values=batch["pixel_values"].index_select(0, sel), return_dict=True)
    return list(out.pooler_output)


@dataclass(frozen=True)
class ArchSpec:
    """What vlmq needs to know about one architecture (see module docstring)."""

    name: str
    lm_path: str
    vision_paths: tuple[str, ...]
    lora_regex: str
    vision_lora_regex: str
    nest_images: bool
    pixel_keys: tuple[str, ...]
    image_features: ImageFeatureFn | None
    fallback_template: str
    eot_token: str | None
    position_ids_from_mask: bool
    first_position: int = 0
    """Position id of the first real token (PaliGemma counts from 1)."""
    prefix_lm: bool = False
    """Response tokens get ``token_type_ids`` 1: the causal suffix after a bidirectional prefix."""

    def lora_targets(self, train_vision: bool = False, lm_head: bool = False) -> str:
        """The LoRA ``target_modules`` regex: the language model, plus the vision tower and the LM
        head (the output projection, top-level ``lm_head`` in every supported model) if asked."""
        parts = [self.lora_regex]
        if train_vision:
            parts.append(self.vision_lora_regex)
        if lm_head:
            parts.append("lm_head")
        return parts[0] if len(parts) == 1 else "|".join(f"(?:{p})" for p in parts)

    def render_fallback(self, prompt: str) -> str:
        """Chat prompt (one user turn with one image + generation prompt) without a chat template."""
        return self.fallback_template.format(prompt=prompt)


ARCHS: dict[str, ArchSpec] = {}


def _register(spec: ArchSpec, *names: str) -> None:
    for n in (spec.name, *names):
        ARCHS[n] = spec


_register(
    ArchSpec(
        name="idefics3",
        lm_path="model.text_model",
        vision_paths=("model.vision_model", "model.connector"),
        lora_regex=rf".*\.text_model\..*\.{_LM_PROJ}",
        vision_lora_regex=r".*\.vision_model\..*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)",
        nest_images=True,
        pixel_keys=("pixel_values", "pixel_attention_mask"),
        image_features=_idefics3_features,
        # SmolVLM's own template, reduced to one user turn.
        fallback_template="<|im_start|>User:<image>{prompt}<end_of_utterance>\nAssistant:",
        eot_token="<end_of_utterance>",
        position_ids_from_mask=True,
    )
)
_QWEN = ArchSpec(
    name="qwen2_vl",
    lm_path="model.language_model",
    vision_paths=("model.visual",),
    lora_regex=rf".*\.language_model\..*\.{_LM_PROJ}",
    vision_lora_regex=r".*\.visual\..*\.(qkv|attn\.proj|fc1|fc2|gate_proj|up_proj|down_proj)",
    nest_images=False,
    pixel_keys=("pixel_values",),
    image_features=_qwen2vl_features,
    fallback_template=(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    ),
    eot_token="<|im_end|>",
    position_ids_from_mask=False,  # M-RoPE: the model derives 3-D positions from the attention mask
)
_register(_QWEN)
_register(replace(_QWEN, name="qwen2_5_vl"))
_LLAVA = ArchSpec(
    name="llava",
    lm_path="model.language_model",
    vision_paths=("model.vision_tower", "model.multi_modal_projector"),
    lora_regex=rf".*\.language_model\..*\.{_LM_PROJ}",
    vision_lora_regex=r".*\.vision_tower\..*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)",
    nest_images=False,
    pixel_keys=("pixel_values",),
    image_features=_llava_features,
    fallback_template="USER: <image>\n{prompt} ASSISTANT:",  # llava-1.5-hf format
    eot_token=None,  # the tokenizer's eos (</s>)
    position_ids_from_mask=True,
)
_register(_LLAVA)
# PaliGemma: LLaVA's module layout (SigLIP tower + projector + Gemma), a prefix-LM
_register(
    replace(
        _LLAVA,
        name="paligemma",
        image_features=None,  # the model wants one feature tensor, not the cache's per-image list
        # no chat template: the processor puts <bos> after the image tokens and "\n" after the prompt
        fallback_template="<image>{prompt}",
        eot_token=None,  # the tokenizer's eos (<eos>)
        first_position=1,
        prefix_lm=True,
    )
)

SUPPORTED = ("idefics3", "qwen2_vl", "qwen2_5_vl", "llava", "paligemma")


def get_arch(model_type: str) -> ArchSpec:
    """The :class:`ArchSpec` of a HF ``config.model_type``; raises ``ValueError`` when unsupported."""
    try:
        return ARCHS[model_type]
    except KeyError:
        raise ValueError(
            f"model_type {model_type!r} is not supported by vlmq (supported: {', '.join(SUPPORTED)}); "
            "add an ArchSpec in vlmq/models/arch.py"
        ) from None


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.model.text_model`` style dotted lookup."""
    mod = model
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


# ----------------------------------------------------------------------------- processors
def _image_only_qwen_processor() -> type:
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
        """Qwen2VLProcessor without the video processor (whose base class needs torchvision).

        ``ProcessorMixin`` derives its attributes from the ``__init__`` signature, so leaving
        ``video_processor`` out of it is enough. Works for Qwen2-VL and Qwen2.5-VL checkpoints.
        """

        def __init__(
            self,
            image_processor: Any = None,
            tokenizer: Any = None,
            chat_template: str | None = None,
            **kw: Any,
        ) -> None:
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return Qwen2VLImageOnlyProcessor


_QWEN_PROC: type | None = None


def qwen2vl_image_only_processor_class() -> type:
    """The (lazily built, cached) ``Qwen2VLImageOnlyProcessor`` class."""
    global _QWEN_PROC
    if _QWEN_PROC is None:
        _QWEN_PROC = _image_only_qwen_processor()
    return _QWEN_PROC


def load_processor(name_or_path: str | os.PathLike[str], model_type: str) -> Any:
    """``AutoProcessor.from_pretrained``, falling back to the image-only Qwen2-VL processor.

    The fallback is needed whenever the stock processor requires a video processor (torchvision).
    """
    from transformers import AutoProcessor

    qwen = model_type in ("qwen2_vl", "qwen2_5_vl")
    try:
        proc = AutoProcessor.from_pretrained(name_or_path)
    except Exception:
        if not qwen:
            raise
    else:
        # AutoProcessor falls back to a bare tokenizer when it does not know the processor class
        if hasattr(proc, "image_processor") or not qwen:
            return proc
    return qwen2vl_image_only_processor_class().from_pretrained(name_or_path)
