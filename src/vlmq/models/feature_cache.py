"""The image-feature cache: vision features of images already seen, reused while the vision tower is
frozen (``Policy`` fills it when it generates, the learner's pass over the same turns reads it).

Keys are :func:`image_hash` values (an image's bytes and shape); entries are the per-image outputs of
the architecture's :class:`~vlmq.models.arch.ImageFeatures`, least recently used first out. An
architecture whose image features do not split per image turns the cache off for good.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from vlmq.models.arch import FeatureCacheUnsupported, ImageFeatures

ImageLike = np.ndarray | Image.Image


def image_hash(image: ImageLike) -> int:
    """A signed 64-bit key of an image's bytes and shape (the feature-cache key)."""
    arr = np.ascontiguousarray(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
    h = hashlib.blake2b(arr.tobytes(), digest_size=8)
    h.update(f"{arr.shape}{arr.dtype}".encode())
    return int.from_bytes(h.digest(), "little", signed=True)


class FeatureCache:
    """An LRU cache of per-image features, keyed by :func:`image_hash`; counts ``hits`` and ``misses``.

    ``off`` is set when the architecture has no per-image features (``reader`` is ``None``) or when
    they turn out not to split per image (:class:`~vlmq.models.arch.FeatureCacheUnsupported`).
    """

    def __init__(self, reader: ImageFeatures | None) -> None:
        self.reader = reader
        self.entries: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.off = reader is None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        """Forget cached features (the counters stay)."""
        self.entries.clear()

    def use(
        self,
        backbone: nn.Module,
        batch: dict[str, torch.Tensor],
        inputs: dict[str, Any],
        *,
        max_size: int,
        pixel_keys: tuple[str, ...],
        device: torch.device,
    ) -> None:
        """Swap the pixel inputs (``pixel_keys``) of ``inputs`` for (cached) image features, computing
        the missing ones with ``backbone`` and keeping at most ``max_size`` entries; leaves ``inputs``
        alone and turns the cache off for good when the model's image features do not split per image."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        reader = self.reader
        assert reader is not None
        keys = batch["image_hash"].tolist()
        todo: dict[int, int] = {}
        for i, key in enumerate(keys):
            if key not in self.entries and key not in todo:
                todo[key] = i
        fresh: dict[int, torch.Tensor] = {}
        if todo:
            try:
                with torch.no_grad():
                    feats = reader.compute(backbone, inputs, list(todo.values()))
            except FeatureCacheUnsupported:
                self.off = True
                return
            fresh = {key: f.detach() for key, f in zip(todo, feats, strict=True)}
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        pooled = []
        for key in keys:
            f = fresh.get(key)
            if f is None:
                f = self.entries[key]
                self.entries.move_to_end(key)
            pooled.append(f.to(device))
        for key, f in fresh.items():
            self.entries[key] = f
        while len(self.entries) > max_size:
            self.entries.popitem(last=False)
        for k in pixel_keys:
            inputs.pop(k, None)
        inputs["mm_encoder_outputs"] = {
            "image": BaseModelOutputWithPooling(pooler_output=reader.combine(pooled))
        }
