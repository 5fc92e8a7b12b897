"""What vlmq needs to know about a model, derived from the loaded model itself.

:func:`arch_for` reads a loaded HF image-text-to-text model (and its processor) and returns an
:class:`ArchSpec`:

- where the language model lives (``lm_path``: the module ``get_decoder()`` returns) and which modules
  are the vision side (``vision_paths``: the backbone's other children);
- which modules LoRA targets: a regex matching the language model's ``nn.Linear`` layers only (the
  vision towers also have ``q_proj``/``fc1`` layers, so a plain list of names would LoRA them too);
- which inputs carry pixels, and how to compute image features for a subset of a batch through the
  model's own ``get_image_features`` (:class:`ImageFeatures`), so that
  :class:`~vlmq.models.policy.Policy` can cache them per image and feed them back through
  ``mm_encoder_outputs``; ``None`` where the signature asks for inputs vlmq cannot slice per image;
- positions: from the attention mask, except for models with their own (M-RoPE) ``get_rope_index``;
- the end-of-turn token the model emits after its answer (read from the chat template) and the
  prompt format used only when the processor has no chat template.

:data:`OVERRIDES` holds the few facts the model does not show: PaliGemma is a prefix-LM (image and
prompt attend to each other both ways, the answer causally; its processor marks the answer with
``token_type_ids`` 1 only when given a ``suffix``, so ``prefix_lm`` tells the policy to mark the
appended response tokens itself, as ``generate`` does) whose positions start at 1. Gemma-2 logit
soft-capping is read from the config by the policy. Encoder-decoder models are refused with one line
(:class:`UnsupportedModelError`). :data:`TESTED` lists the model types tested on tiny random models
(``vlmq models``).
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from vlmq.models.hub import ModelLoadError


class UnsupportedModelError(ModelLoadError):
    """A model vlmq cannot train; the message names the model type and says why."""


# inputs of ``get_image_features`` that vlmq can cut per image (one image per sample)
_PER_IMAGE_INPUTS = frozenset(
    {"pixel_values", "pixel_attention_mask", "image_sizes", "image_grid_thw", "spatial_shapes"}
)
# output fields of ``get_image_features`` that the cache may drop (it keeps ``pooler_output`` only)
_DROPPABLE_OUTPUTS = frozenset({"last_hidden_state", "pooler_output", "hidden_states", "attentions"})


class FeatureCacheUnsupported(RuntimeError):
    """The model's image features carry more than per-image ``pooler_output`` (e.g. Qwen3-VL's deepstack)."""


@dataclass
class ImageFeatures:
    """Per-sample image features through the backbone's own ``get_image_features``.

    :meth:`compute` returns one tensor per requested sample; :meth:`combine` turns the per-sample
    tensors of a batch back into the ``pooler_output`` the model's forward expects (one tensor when
    ``get_image_features`` returns one, else a list).
    """

    params: tuple[str, ...]
    joined: bool | None = field(default=None, init=False)

    def compute(self, backbone: nn.Module, batch: dict[str, Any], idx: Sequence[int]) -> list[torch.Tensor]:
        kw: dict[str, Any] = {}
        sel = torch.as_tensor(list(idx), device=batch["input_ids"].device)
        thw = batch.get("image_grid_thw")
        for name in self.params:
            v = batch.get(name)
            if not isinstance(v, torch.Tensor):
                continue
            if name == "pixel_values" and thw is not None:  # flattened patches of all images
                ends = thw.prod(-1).cumsum(0).tolist()
                starts = [0, *ends[:-1]]
                v = torch.cat([v[int(starts[i]) : int(ends[i])] for i in idx], dim=0)
            else:
                v = v.index_select(0, sel.to(v.device))
            kw[name] = v
        out = backbone.get_image_features(**kw, return_dict=True)
        extra = [k for k, v in out.items() if k not in _DROPPABLE_OUTPUTS and v is not None]
        if extra:
            raise FeatureCacheUnsupported(f"image features also carry {extra}")
        pooled = out.pooler_output
        if isinstance(pooled, torch.Tensor):
            self.joined = True
            return list(pooled.split(self._sizes(kw.get("pixel_values"), pooled.shape[0], len(idx))))
        if len(pooled) != len(idx):
            raise FeatureCacheUnsupported("image features are not one entry per sample")
        self.joined = False
        return list(pooled)

    @staticmethod
    def _sizes(pixels: torch.Tensor | None, n: int, samples: int) -> list[int]:
        """How many of ``n`` joined feature rows belong to each sample: with ``[B, tiles, C, H, W]``
        pixels (Idefics, SmolVLM) the sample's real (not all-zero padding) tiles, else ``n / B``."""
        if pixels is not None and pixels.dim() == 5:
            sizes = (pixels.flatten(2) != 0).any(-1).sum(1).tolist()
            if sum(sizes) == n:
                return [int(k) for k in sizes]
        if n % samples:
            raise FeatureCacheUnsupported("image features are not a whole number per sample")
        return [n // samples] * samples

    def combine(self, feats: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        return torch.cat(feats, dim=0) if self.joined else feats


@dataclass(frozen=True)
class ArchSpec:
    """What vlmq needs to know about one loaded model (see module docstring)."""

    name: str
    lm_path: str
    vision_paths: tuple[str, ...]
    lora_regex: str
    vision_lora_regex: str
    pixel_keys: tuple[str, ...]
    image_features: ImageFeatures | None
    fallback_template: str
    eot_token: str | None
    position_ids_from_mask: bool
    nest_images: bool = True
    """Images go to the processor as one list per sample (``[[im0], [im1]]``)."""
    first_position: int = 0
    """Position id of the first real token (PaliGemma counts from 1)."""
    prefix_lm: bool = False
    """Response tokens get ``token_type_ids`` 1: the causal suffix after a bidirectional prefix."""

    def lora_targets(self, train_vision: bool = False, lm_head: bool = False) -> str:
        """The LoRA ``target_modules`` regex: the language model, plus the vision side and the LM
        head (the output projection, top-level ``lm_head``) if asked."""
        parts = [self.lora_regex]
        if train_vision and self.vision_lora_regex:
            parts.append(self.vision_lora_regex)
        if lm_head:
            parts.append("lm_head")
        return parts[0] if len(parts) == 1 else "|".join(f"(?:{p})" for p in parts)

    def render_fallback(self, prompt: str) -> str:
        """Chat prompt (one user turn with one image + generation prompt) without a chat template."""
        return self.fallback_template.format(prompt=prompt)


OVERRIDES: dict[str, dict[str, Any]] = {
    "paligemma": dict(first_position=1, prefix_lm=True, fallback_template="<image>{prompt}"),
    # the shipped `tiny` and SmolVLM v1 without a chat template: SmolVLM's own, one user turn
    "idefics3": dict(fallback_template="<|im_start|>User:<image>{prompt}<end_of_utterance>\nAssistant:"),
}


@dataclass(frozen=True)
class Tested:
    """A model type tested on a tiny random model (``tests/test_models.py``) and what applies to it."""

    example: str
    feature_cache: bool
    prefix_lm: bool = False
    bf16: bool = True


TESTED: dict[str, Tested] = {
    "idefics3": Tested("HuggingFaceTB/SmolVLM-256M-Instruct", True),
    "smolvlm": Tested("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", True),
    "idefics2": Tested("HuggingFaceM4/idefics2-8b", True),
    "qwen2_vl": Tested("Qwen/Qwen2-VL-2B-Instruct", True),
    "qwen2_5_vl": Tested("Qwen/Qwen2.5-VL-3B-Instruct", True),
    "qwen3_vl": Tested("Qwen/Qwen3-VL-2B-Instruct", False),
    "llava": Tested("llava-hf/llava-1.5-7b-hf", True),
    "llava_next": Tested("llava-hf/llava-v1.6-mistral-7b-hf", True),
    "llava_onevision": Tested("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", True),
    "mistral3": Tested("mistralai/Mistral-Small-3.1-24B-Instruct-2503", True),
    "gemma3": Tested("google/gemma-3-4b-it", True),
    "paligemma": Tested("google/paligemma2-3b-mix-224", True, prefix_lm=True),
}


def models_table() -> str:
    """The tested model types and what applies to each, as a text table (``vlmq models``)."""
    yes = {True: "yes", False: "-"}
    rows = [("model_type", "feature cache", "prefix-LM", "bf16", "example checkpoint")]
    rows += [(mt, yes[t.feature_cache], yes[t.prefix_lm], yes[t.bf16], t.example) for mt, t in TESTED.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    lines.append(
        "Other image-text-to-text model types go through the same generic path (untested); "
        "encoder-decoder models are refused."
    )
    return "\n".join(lines)


def _module_name(model: nn.Module, target: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if m is target and n), None)


def _linear_regex(paths: Sequence[str], model: nn.Module) -> str:
    """A regex matching every ``nn.Linear`` under ``paths`` (full module names)."""
    leaves: set[str] = set()
    for path in paths:
        for name, mod in get_submodule(model, path).named_modules():
            if isinstance(mod, nn.Linear) and name:
                leaves.add(name.rsplit(".", 1)[-1])
    if not leaves:
        return ""
    prefix = "|".join(re.escape(p) for p in paths)
    return rf"(?:{prefix})\.(?:.*\.)?(?:{'|'.join(sorted(leaves))})"


def _eot_token(processor: Any) -> str | None:
    """The token the chat template writes right after an assistant answer, if it is a special token."""
    tok = getattr(processor, "tokenizer", None)
    if tok is None or not getattr(processor, "chat_template", None):
        return None
    answer = "vlmq-answer-xyz"
    for content in ([{"type": "text", "text": answer}], answer):
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": content},
        ]
        try:
            text = processor.apply_chat_template(messages, tokenize=False)
        except Exception:
            continue
        if answer not in text:
            continue
        after = text.split(answer, 1)[1]
        ids = tok(after, add_special_tokens=False)["input_ids"]
        if ids and ids[0] in set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {})):
            return tok.convert_ids_to_tokens(ids[0])
        return None
    return None


def _image_features(backbone: nn.Module) -> ImageFeatures | None:
    fn = getattr(backbone, "get_image_features", None)
    if fn is None:
        return None
    params = inspect.signature(fn).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [n for n, p in params.items() if p.kind in kinds]
    required = [n for n in named if params[n].default is inspect.Parameter.empty]
    if "pixel_values" not in named or any(n not in _PER_IMAGE_INPUTS for n in required):
        return None
    return ImageFeatures(tuple(n for n in named if n in _PER_IMAGE_INPUTS))


def arch_for(model: nn.Module, processor: Any = None) -> ArchSpec:
    """The :class:`ArchSpec` of a loaded HF image-text-to-text model (see module docstring).

    Raises :class:`UnsupportedModelError` (one line: the model type and why) for a model vlmq
    cannot train.
    """
    cfg = model.config
    mt = str(getattr(cfg, "model_type", type(model).__name__))

    def refuse(why: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"model_type {mt!r} is not supported by vlmq: {why}")

    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    if getattr(cfg, "is_encoder_decoder", False) or getattr(text_cfg, "is_encoder_decoder", False):
        raise refuse(
            "an encoder-decoder model; vlmq needs a decoder-only language model (one pass "
            "over prompt + answer scores every answer token)"
        )
    backbone = getattr(model, "model", None)
    if not isinstance(backbone, nn.Module) or model.get_output_embeddings() is None:
        raise refuse("no `model` backbone with a separate LM head (`get_output_embeddings()`)")
    try:
        lm = model.get_decoder()
    except Exception:
        lm = None
    lm_path = _module_name(model, lm) if isinstance(lm, nn.Module) else None
    if lm_path is None or lm is backbone or lm is model:
        raise refuse("no separate language model (`get_decoder()` returns none inside the backbone)")
    if any(isinstance(m, nn.Module) and "cross_attn" in n for n, m in lm.named_modules()):
        raise refuse(
            "its language model reads the image through cross-attention layers, "
            "which vlmq's one-image-per-turn batches do not cover"
        )
    # the vision side: the language model's siblings (vision tower, projector), the LM head aside
    parent = lm_path.rsplit(".", 1)[0] if "." in lm_path else ""
    head = model.get_output_embeddings()
    vision_paths = tuple(
        f"{parent}.{n}" if parent else n
        for n, m in (get_submodule(model, parent) if parent else model).named_children()
        if m is not lm and m is not head and any(True for _ in m.parameters())
    )
    lora = _linear_regex([lm_path], model)
    if not lora:
        raise refuse("its language model has no nn.Linear layers for LoRA")
    image_token = getattr(processor, "image_token", None) or "<image>"
    over = OVERRIDES.get(mt, {})
    fields: dict[str, Any] = dict(
        name=mt,
        lm_path=lm_path,
        vision_paths=vision_paths,
        lora_regex=lora,
        vision_lora_regex=_linear_regex(vision_paths, model),
        pixel_keys=("pixel_values", "pixel_attention_mask"),
        image_features=_image_features(backbone),
        fallback_template=f"{image_token}{{prompt}}",
        eot_token=_eot_token(processor),
        position_ids_from_mask=not hasattr(backbone, "get_rope_index"),
    )
    fields.update(over)
    return ArchSpec(**fields)


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.model.text_model`` style dotted lookup."""
    mod = model
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


# ----------------------------------------------------------------------------- processors
_IMAGE_ONLY: dict[type, type] = {}


def image_only_processor_class(cls: type) -> type:
    """``cls`` (a processor class with a ``video_processor``) without it: the video processors'
    base class needs torchvision, which vlmq does not (one image per turn). Cached per class.

    ``ProcessorMixin`` derives the sub-processors it checks, saves and loads from
    ``get_attributes``; leaving ``video_processor`` out of it is enough (the class's ``__init__``
    gets ``video_processor=None``, which ``ProcessorMixin`` then ignores).
    """
    if cls not in _IMAGE_ONLY:
        # ``__init__`` with the parent's parameters but ``video_processor`` (``from_pretrained`` reads
        # the accepted options from its code object, ``to_dict`` from its signature)
        params = [p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "video_processor"]
        defaults = {p.name: None if p.default is p.empty else p.default for p in params}
        sig, call = [], []
        for p in params[1:]:
            if p.kind is p.VAR_KEYWORD:
                sig.append(f"**{p.name}")
                call.append(f"**{p.name}")
            elif p.kind is not p.VAR_POSITIONAL:
                sig.append(f"{p.name}=_d[{p.name!r}]")
                call.append(f"{p.name}={p.name}")
        ns: dict[str, Any] = {"_d": defaults, "_parent": cls.__init__}
        src = f"def __init__(self, {', '.join(sig)}):\n    _parent(self, video_processor=None, {', '.join(call)})\n"
        exec(src, ns)

        def get_attributes(_: type) -> list[str]:
            return [a for a in cls.get_attributes() if a != "video_processor"]

        _IMAGE_ONLY[cls] = type(
            f"{cls.__name__}ImageOnly",
            (cls,),
            {
                "__init__": ns["__init__"],
                "get_attributes": classmethod(get_attributes),
                "__module__": __name__,
                # read by some chat templates' defaults (SmolVLM: frames and fps of a video)
                "video_processor": SimpleNamespace(num_frames=None, fps=None),
            },
        )
    return _IMAGE_ONLY[cls]


def import_processor(name: str) -> type | None:
    """The processor class ``name`` from its own module (not transformers' lazy placeholder, which
    refuses to build without torchvision when only an unused fast image processor needs it)."""
    import importlib
    import sys

    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, model_type_to_module_name

    for key in [k for k, v in PROCESSOR_MAPPING_NAMES.items() if v == name]:
        module = model_type_to_module_name(key)
        base = f"transformers.models.{module}"
        try:
            mod = importlib.import_module(f"{base}.processing_{module}")
        except ModuleNotFoundError as exc:
            if exc.name != "torchvision":
                continue
            # the processor imports a helper from the torchvision image processor: take the PIL one's
            try:
                sys.modules.setdefault(
                    f"{base}.image_processing_{module}",
                    importlib.import_module(f"{base}.image_processing_pil_{module}"),
                )
                mod = importlib.import_module(f"{base}.processing_{module}")
            except ImportError:
                continue
        except ImportError:
            continue
        cls = getattr(mod, name, None)
        if isinstance(cls, type):
            return cls
    return None


def _processor_class(name_or_path: str | os.PathLike[str], model_type: str) -> type | None:
    """The processor class a checkpoint names (``processor_config.json``), else its model type's."""
    import json
    from pathlib import Path

    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    names: list[Any] = []
    cfg_file = Path(name_or_path) / "processor_config.json"
    if cfg_file.is_file():
        saved = json.loads(cfg_file.read_text()).get("processor_class")
        names += [saved, saved.removesuffix("ImageOnly")] if isinstance(saved, str) else []
    names.append(PROCESSOR_MAPPING_NAMES.get(model_type))
    for name in names:
        cls = import_processor(name) if isinstance(name, str) else None
        if cls is not None:
            return cls
    return None


def load_processor(name_or_path: str | os.PathLike[str], model_type: str) -> Any:
    """``AutoProcessor.from_pretrained``, falling back to the checkpoint's processor class imported
    from its module, as its image-only variant (:func:`image_only_processor_class`) where it has a
    video processor: the stock classes need torchvision for video or fast image processors."""
    from transformers import AutoProcessor

    try:
        proc = AutoProcessor.from_pretrained(name_or_path)
    except Exception:
        proc = None
    # AutoProcessor falls back to a bare tokenizer when it does not know the processor class
    if proc is not None and hasattr(proc, "image_processor"):
        return proc
    cls = _processor_class(name_or_path, model_type)
    if cls is None:
        if proc is None:
            return AutoProcessor.from_pretrained(name_or_path)  # raises AutoProcessor's own error
        raise ModelLoadError(f"{name_or_path}: no image processor found for model_type {model_type!r}")
    if "video_processor" in cls.get_attributes():
        cls = image_only_processor_class(cls)
    return cls.from_pretrained(name_or_path)
