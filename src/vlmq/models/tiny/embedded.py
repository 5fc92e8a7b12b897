"""The embedded ``tiny`` model's size and a fresh, untrained one: a small Idefics3 (SmolVLM
architecture) whose shipped weights live in ``vlmq/assets/tiny`` (:data:`ASSET_DIR`, the folder
:func:`vlmq.models.hub.resolve_model` gives for ``"tiny"``). The model's size (:data:`TINY_SIZE`)
can be changed with :func:`make_size`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vlmq.models.hub import EMBEDDED_MODELS
from vlmq.models.tiny.builders import idefics3
from vlmq.models.tiny.tokenizer import domain_corpus

ASSET_DIR = EMBEDDED_MODELS["tiny"]
INFO_FILE = "pretrain_info.json"

# The shipped size: ~1.8 M parameters (fp32 ~7 MB), 128 px images, 16 image tokens.
TINY_SIZE: dict[str, Any] = dict(
    image_size=128,
    patch=16,
    sf=2,
    vocab_size=1536,
    vision=dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4),
    text=dict(
        hidden_size=160,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=5,
        num_key_value_heads=5,
        tie_word_embeddings=True,
    ),
)
# For tests: seconds, not minutes.
MICRO_SIZE: dict[str, Any] = dict(
    image_size=32,
    patch=16,
    sf=2,
    vocab_size=600,
    vision=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
    text=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
)


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        out[k] = _merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _widen(part: Mapping[str, Any], width: int | None, depth: int | None, what: str) -> dict[str, Any]:
    """``part`` with ``width`` hidden units (same head width, MLP ratio and query/kv-head ratio) and
    ``depth`` layers."""
    out = dict(part)
    if depth is not None:
        out["num_hidden_layers"] = int(depth)
    if width is not None:
        head = part["hidden_size"] // part["num_attention_heads"]
        if width % head:
            raise ValueError(f"{what} width must be a multiple of its head width {head}, got {width}")
        heads = width // head
        out["hidden_size"] = int(width)
        out["num_attention_heads"] = heads
        out["intermediate_size"] = int(
            round(width * part["intermediate_size"] / part["hidden_size"] / 16) * 16
        )
        if "num_key_value_heads" in part:
            group = part["num_attention_heads"] // part["num_key_value_heads"]
            out["num_key_value_heads"] = heads // group if heads % group == 0 else heads
    return out


def check_size(size: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``size`` builds: patches tile the image, the pixel shuffle
    (``sf``) tiles the patch grid, widths split into whole heads."""
    img, patch, sf = int(size["image_size"]), int(size["patch"]), int(size["sf"])
    if img % patch or (img // patch) % sf:
        raise ValueError(f"image_size {img} must be a multiple of patch {patch} x sf {sf}")
    for part in ("vision", "text"):
        d = size[part]
        if d["hidden_size"] % d["num_attention_heads"]:
            raise ValueError(f"{part} hidden_size {d['hidden_size']} is not a multiple of its heads")
    t = size["text"]
    if t["num_attention_heads"] % t.get("num_key_value_heads", t["num_attention_heads"]):
        raise ValueError("text num_attention_heads must be a multiple of num_key_value_heads")


def image_tokens(size: Mapping[str, Any]) -> int:
    """Image tokens the language model sees per image: ``(image_size / patch / sf) ** 2``."""
    return (int(size["image_size"]) // int(size["patch"]) // int(size["sf"])) ** 2


def make_size(
    spec: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    image_size: int | None = None,
    patch: int | None = None,
    sf: int | None = None,
    vocab_size: int | None = None,
    vision_width: int | None = None,
    vision_depth: int | None = None,
    text_width: int | None = None,
    text_depth: int | None = None,
) -> dict[str, Any]:
    """A model size: ``base`` (default :data:`TINY_SIZE`) updated by ``spec`` (a dict, a JSON file or
    JSON text; nested and partial; a ``pretrain_info.json`` gives its ``size``), then by the flags.
    A new width keeps the base's head width, MLP ratio and query/kv-head ratio. Checked with
    :func:`check_size`."""
    size = copy.deepcopy(dict(base or TINY_SIZE))
    if spec is not None:
        if not isinstance(spec, Mapping):
            text = str(spec)
            spec = json.loads(text if text.lstrip().startswith("{") else Path(text).read_text())
        assert isinstance(spec, Mapping)
        size = _merged(size, spec.get("size", spec))
    for key, value in (("image_size", image_size), ("patch", patch), ("sf", sf), ("vocab_size", vocab_size)):
        if value is not None:
            size[key] = int(value)
    size["vision"] = _widen(size["vision"], vision_width, vision_depth, "vision")
    size["text"] = _widen(size["text"], text_width, text_depth, "text")
    check_size(size)
    return size


def build_tiny_pretrain(size: dict[str, Any], corpus: list[str], seed: int) -> tuple[torch.nn.Module, Any]:
    """A fresh Idefics3 of ``size`` (see :data:`TINY_SIZE`) and its processor (tokenizer on ``corpus``)."""
    from transformers import AutoModelForImageTextToText

    cfg, proc = idefics3(
        image_size=size["image_size"],
        patch=size["patch"],
        sf=size["sf"],
        vision=dict(size["vision"]),
        text=dict(size["text"]),
        corpus=domain_corpus() + corpus,
        vocab_size=size["vocab_size"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(cfg)
    tok = proc.tokenizer
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model, proc
