"""Training batches: turns paired with their next observation, tokenised for one policy.

A :class:`TurnSample` is one turn plus what the critic needs to bootstrap across the turn boundary:
the next turn's prompt and image in the same episode, or, for the last turn of a *truncated* episode,
the final observation. A terminated turn has nothing to bootstrap from.

:class:`OfflineStream` walks a store shard by shard (one shard in memory), in a seeded order that a
saved cursor reproduces exactly. :func:`make_batch` tokenises samples with ``policy.encode``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlmq.data.schema import decode_png
from vlmq.data.store import EpisodeStore

SAMPLE_COLUMNS = (
    "episode_id", "turn", "image", "prompt", "response", "reward", "terminated", "truncated",
    "final_image", "final_prompt",
)  # fmt: skip


@dataclass
class TurnSample:
    """One logged turn (images still PNG bytes) and its bootstrap observation, if any."""

    image: bytes
    prompt: str
    response: str
    reward: float
    terminated: bool
    truncated: bool
    next_image: bytes | None
    next_prompt: str | None
    where: str = "dataset"


@dataclass
class TrainBatch:
    """Tokenised turns (training layout) and their bootstrap observations (prompt-only layout).

    ``next_index[b]`` is the row of ``next_inputs`` holding turn ``b``'s next observation, -1 if none.
    """

    inputs: dict[str, torch.Tensor]
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    has_next: torch.Tensor
    next_inputs: dict[str, torch.Tensor] | None
    next_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


def samples_from_rows(rows: Iterable[dict[str, Any]], where: str = "dataset") -> list[TurnSample]:
    """Pair every turn with the next observation of its episode (rows of whole episodes, any order)."""
    by_key = {(r["episode_id"], r["turn"]): r for r in rows}
    out = []
    for (ep, t), r in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        nxt = by_key.get((ep, t + 1))
        if r["terminated"]:
            next_image, next_prompt = None, None
        elif nxt is not None:
            next_image, next_prompt = nxt["image"], nxt["prompt"]
        else:  # last turn of a truncated episode: bootstrap from the final observation
            next_image, next_prompt = r.get("final_image"), r.get("final_prompt")
            if next_image is None or next_prompt is None:
                next_image, next_prompt = None, None
        out.append(
            TurnSample(
                image=r["image"],
                prompt=r["prompt"],
                response=r["response"] or "",
                reward=float(r["reward"]),
                terminated=bool(r["terminated"]),
                truncated=bool(r["truncated"]),
                next_image=next_image,
                next_prompt=next_prompt,
                where=f"{where}: episode {ep} turn {t}",
            )
        )
    return out


def make_batch(policy: Any, samples: Sequence[TurnSample]) -> TrainBatch:
    """Decode images and tokenise ``samples`` with ``policy.encode`` (see :class:`TrainBatch`)."""
    images = [decode_png(s.image, s.where) for s in samples]
    inputs = policy.encode(images, [s.prompt for s in samples], [s.response for s in samples])
    with_next = [i for i, s in enumerate(samples) if s.next_image is not None]
    next_index = torch.full((len(samples),), -1, dtype=torch.long)
    next_inputs = None
    if with_next:
        next_images = [decode_png(samples[i].next_image, samples[i].where) for i in with_next]  # type: ignore[arg-type]
        next_inputs = policy.encode(next_images, [samples[i].next_prompt for i in with_next])  # type: ignore[misc]
        next_index[with_next] = torch.arange(len(with_next))
    return TrainBatch(
        inputs=inputs,
        rewards=torch.tensor([s.reward for s in samples], dtype=torch.float32),
        terminated=torch.tensor([s.terminated for s in samples], dtype=torch.bool),
        truncated=torch.tensor([s.truncated for s in samples], dtype=torch.bool),
        has_next=next_index >= 0,
        next_inputs=next_inputs,
        next_index=next_index,
    )


class OfflineStream:
    """Endless seeded stream of :class:`TurnSample` over a store, one shard in memory at a time.

    Epoch ``e`` visits the shards in the order ``permutation(seed, e)`` and the turns of each shard in
    the order ``permutation(seed, e, shard)``; the cursor ``(epoch, shard_pos, row_pos)`` is all the
    state there is, so :meth:`state_dict` / :meth:`load_state_dict` resume the exact same stream.
    """

    def __init__(self, store: EpisodeStore, seed: int = 0) -> None:
        self.store = store
        self.seed = seed
        self.epoch = 0
        self.shard_pos = 0
        self.row_pos = 0
        self._shards = store.shards()
        if not self._shards:
            raise ValueError(f"{store.path}: dataset is empty")
        self._loaded: tuple[int, int] | None = None
        self._samples: list[TurnSample] = []
        self._order: np.ndarray = np.zeros(0, dtype=np.int64)

    def _load(self) -> None:
        key = (self.epoch, self.shard_pos)
        if self._loaded == key:
            return
        shard_order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self._shards))
        shard_idx = int(shard_order[self.shard_pos])
        shard = self._shards[shard_idx]
        self._samples = samples_from_rows(self.store.read_shard(shard, SAMPLE_COLUMNS), where=str(shard))
        self._order = np.random.default_rng([self.seed, self.epoch, shard_idx]).permutation(
            len(self._samples)
        )
        self._loaded = key

    def take(self, n: int) -> list[TurnSample]:
        """The next ``n`` samples (crossing shard and epoch boundaries)."""
        out: list[TurnSample] = []
        while len(out) < n:
            self._load()
            if self.row_pos >= len(self._order):
                self.row_pos = 0
                self.shard_pos += 1
                if self.shard_pos >= len(self._shards):
                    self.shard_pos = 0
                    self.epoch += 1
                continue
            out.append(self._samples[int(self._order[self.row_pos])])
            self.row_pos += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "shard_pos": self.shard_pos, "row_pos": self.row_pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.shard_pos, self.row_pos = state["epoch"], state["shard_pos"], state["row_pos"]
        self._loaded = None
