"""Training batches of captions: :class:`Batcher` (images processed once, prompts spliced) and
:func:`caption_loss`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vlmq.models.tiny.scenes import Scene
from vlmq.utils.progress import progress_bar


class Batcher:
    """Turns scenes + (question, caption) pairs into training batches without re-running the image
    processor: images are processed once (stored exactly as uint8) and the expanded image-token
    block is spliced into the chat-templated prompt (same ids as the processor, checked once)."""

    def __init__(self, processor: Any, scenes: Sequence[Scene], progress: bool = False) -> None:
        from PIL import Image

        self.proc = processor
        self.tok = processor.tokenizer
        ip = processor.image_processor
        self._mean = torch.tensor(ip.image_mean).view(3, 1, 1)
        self._std = torch.tensor(ip.image_std).view(3, 1, 1)
        self._scale = float(ip.rescale_factor)
        self._pixels: list[torch.Tensor] = []  # uint8 [N, 3, H, W] chunks, joined on first use
        self._masks: list[torch.Tensor] = []
        self.add(scenes, progress)
        probe = processor(text=["<image>"], images=[[Image.fromarray(scenes[0].image)]], return_tensors="pt")
        self.image_block = self.tok.decode(probe["input_ids"][0].tolist(), skip_special_tokens=False)
        if not torch.allclose(self.pixel_values([0])[0], probe["pixel_values"][0], atol=1e-5):
            raise RuntimeError("stored images do not reproduce the image processor's output")
        self.eot = self.tok.convert_tokens_to_ids("<end_of_utterance>")

    def add(self, scenes: Sequence[Scene], progress: bool = False) -> None:
        """Process ``scenes``' images and append them (indices continue after the stored ones)."""
        from PIL import Image

        ip = self.proc.image_processor
        for k in progress_bar(range(0, len(scenes), 64), desc="images", disable=not progress, leave=False):
            chunk = [[Image.fromarray(s.image)] for s in scenes[k : k + 64]]
            out = ip(chunk, return_tensors="pt")
            pv = out["pixel_values"][:, 0]
            raw = ((pv * self._std + self._mean) / self._scale).round().clamp(0, 255).to(torch.uint8)
            self._pixels.append(raw)
            self._masks.append(out["pixel_attention_mask"][:, 0].bool())

    @property
    def pixels(self) -> torch.Tensor:
        """All stored images, uint8 ``[N, 3, H, W]`` as the image processor resized them."""
        if len(self._pixels) > 1:
            self._pixels = [torch.cat(self._pixels)]
        return self._pixels[0]

    @property
    def masks(self) -> torch.Tensor:
        """All stored pixel attention masks, bool ``[N, H, W]``."""
        if len(self._masks) > 1:
            self._masks = [torch.cat(self._masks)]
        return self._masks[0]

    def pixel_values(self, idx: Sequence[int]) -> torch.Tensor:
        raw = self.pixels[list(idx)].float()
        return ((raw * self._scale - self._mean) / self._std).unsqueeze(1)

    def prompt_text(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = self.proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text.replace("<image>", self.image_block, 1)

    def batch(self, items: Sequence[tuple[int, str, str]]) -> dict[str, torch.Tensor]:
        """``(scene index, question, caption)`` -> right-padded model inputs + ``labels`` (-100 off caption)."""
        rows: list[tuple[list[int], int]] = []
        for _, q, c in items:
            prompt = self.tok(self.prompt_text(q), add_special_tokens=False)["input_ids"]
            resp = self.tok(c, add_special_tokens=False)["input_ids"] + [self.eot]
            rows.append((prompt + resp, len(prompt)))
        B, T = len(rows), max(len(r) for r, _ in rows)
        ids = torch.full((B, T), int(self.tok.pad_token_id), dtype=torch.long)
        att = torch.zeros((B, T), dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)
        for b, (r, n_prompt) in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            att[b, : len(r)] = 1
            labels[b, n_prompt : len(r)] = ids[b, n_prompt : len(r)]
        idx = [i for i, _, _ in items]
        return {
            "input_ids": ids,
            "attention_mask": att,
            "position_ids": (att.cumsum(-1) - 1).clamp(min=0),
            "pixel_values": self.pixel_values(idx),
            "pixel_attention_mask": self.masks[idx].unsqueeze(1),
            "labels": labels,
        }


def caption_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over caption tokens (+ end of turn)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]
    target = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))
