"""Training batches: turns paired with their next observation, tokenised for one policy.

A :class:`TurnSample` is one logged turn plus what the critic needs to bootstrap across the turn
boundary: the next turn's prompt and image in the same episode or, for the last turn of a *truncated*
episode, the final observation (``final_image``/``final_prompt``). A terminated turn has nothing to
bootstrap from.

:class:`OfflineStream` walks a store in a seeded order, holding one *buffer* of shards in memory (at
most ``buffer_turns`` turns, or one shard if a shard is larger) and shuffling turns within it; its
cursor (epoch, buffer, position, shard count, seed) is all the state there is, so a saved cursor
resumes the exact same stream. With ``segment_turns = K > 1`` it shuffles *segments* instead of turns:
each episode is cut into runs of up to ``K`` consecutive turns (turns ``0..K-1``, ``K..2K-1``, ...),
and the turns of a segment follow each other in the stream (see :func:`episode_segments`).
:func:`make_batch` tokenises samples with ``policy.encode`` into a :class:`TrainBatch`.

**Linked next states.** ``V'(s_{t+1}^0)`` is the target critic's value at the state before the first
response token of the next turn, i.e. at the last prompt position of the next observation. When that
observation (same image bytes, same prompt text) is itself a row of the batch with a response,
``make_batch(..., link=True)`` points the turn at that row (``TrainBatch.next_row``) and the loss reads
the value from that row's first response state in the main pass (detached); only the next observations
of no row go through the separate gradient-free bootstrap pass. By causality the hidden state at the
last prompt position depends only on the prompt tokens and the image, which ``encode`` tokenises the
same way in both layouts, so both give the same value (to float rounding). Batches of segments of
consecutive turns need a bootstrap row only for each segment's last turn.

The policy contract (docs/design.md): ``encode(images, prompts, responses)`` returns right-padded
tensors with ``input_ids``, ``attention_mask`` and ``response_mask`` (plus vision inputs);
``encode(images, prompts)`` returns the prompt-only layout, left padded, whose last position is the
state before the first response token. When some turn of a batch holds the token ids its model
sampled, ``make_batch`` also passes ``response_ids`` (``None`` for text-only rows): those rows' response
is exactly those ids (a stop token only if the generation emitted one).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmq.data.schema import DataError, decode_png
from vlmq.data.store import EpisodeStore

SAMPLE_COLUMNS = (
    "episode_id", "turn", "image", "prompt", "response", "reward", "terminated", "truncated",
    "final_image", "final_prompt", "response_ids", "response_finished",
)  # fmt: skip


@dataclass
class TurnSample:
    """One logged turn (images still PNG bytes) and its bootstrap observation, if any.

    ``response_ids``: the sampled token ids of a model-written turn (``None``: scripted, or data
    written before ids were stored), trained as they are; ``response_finished``: whether they end
    with the model's stop token.
    """

    image: bytes
    prompt: str
    response: str
    reward: float
    terminated: bool
    truncated: bool
    next_image: bytes | None
    next_prompt: str | None
    where: str = "dataset"
    response_ids: list[int] | None = None
    response_finished: bool | None = None
    episode_id: str | None = None
    turn: int | None = None


@dataclass
class TrainBatch:
    """Tokenised turns (training layout) and their bootstrap observations (prompt-only layout).

    ``rewards``/``terminated``/``truncated``/``has_next`` are ``[B]``; ``next_index[b]`` is the row of
    ``next_inputs`` holding turn ``b``'s next observation, -1 if none (``next_inputs`` is ``None`` when
    no row has one); ``next_row[b]`` is the row of this batch whose first response state is turn
    ``b``'s next state (a *linked* next observation, see the module docstring), -1 if none (``None``:
    linking was off); ``next_value[b]`` turn ``b``'s ``V'(s_{t+1}^0)`` carried from an earlier pass
    (:mod:`vlmq.data.lanes`), NaN if none (``None``: no carried values). A turn with a next state has
    exactly one of the three.
    """

    inputs: dict[str, torch.Tensor]
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    has_next: torch.Tensor
    next_inputs: dict[str, torch.Tensor] | None
    next_index: torch.Tensor
    next_row: torch.Tensor | None = None
    next_value: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def response_mask(self) -> torch.Tensor:
        return self.inputs["response_mask"].bool()


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
                response_ids=r.get("response_ids"),
                response_finished=r.get("response_finished"),
                episode_id=str(ep),
                turn=int(t),
            )
        )
    return out


def episode_segments(samples: Sequence[TurnSample], segment_turns: int) -> list[list[int]]:
    """Indices of ``samples`` cut into segments: runs of up to ``segment_turns`` consecutive turns of one
    episode, in order (turns ``0..K-1``, ``K..2K-1``, ... of each episode, the last one shorter).

    ``samples`` are as :func:`samples_from_rows` returns them (each episode's turns together, sorted);
    a segment ends where the episode changes or a turn is missing, so it never crosses an episode.
    With ``segment_turns = 1`` every turn is its own segment."""
    k = max(1, int(segment_turns))
    segments: list[list[int]] = []
    for i, s in enumerate(samples):
        prev = samples[i - 1] if i else None
        follows = (
            prev is not None
            and s.episode_id is not None
            and prev.episode_id == s.episode_id
            and prev.turn is not None
            and s.turn == prev.turn + 1
        )
        if follows and len(segments[-1]) < k:
            segments[-1].append(i)
        else:
            segments.append([i])
    return segments


def link_rows(samples: Sequence[TurnSample], response_mask: torch.Tensor) -> torch.Tensor:
    """``next_row [B]``: for each turn with a next observation, a row of the batch whose observation is
    that next observation (same prompt text and image bytes) and which has at least one response token,
    so its first response state is the next state; -1 where there is none (see the module docstring)."""
    has_response = response_mask.bool().any(1).tolist()
    rows: dict[tuple[str, bytes], int] = {}
    for j, s in enumerate(samples):
        if has_response[j]:
            rows.setdefault((s.prompt, s.image), j)
    next_row = torch.full((len(samples),), -1, dtype=torch.long)
    for i, s in enumerate(samples):
        if s.next_image is not None and s.next_prompt is not None:
            next_row[i] = rows.get((s.next_prompt, s.next_image), -1)
    return next_row


def make_batch(
    policy: Any,
    samples: Sequence[TurnSample],
    link: bool = False,
    next_values: Sequence[float | None] | None = None,
) -> TrainBatch:
    """Decode images and tokenise ``samples`` with ``policy.encode`` (see :class:`TrainBatch`); turns
    with stored ``response_ids`` are encoded from those ids, the others from their text.

    ``link``: read the next state's value from a row of the batch where one holds that observation
    (``next_row``) and bootstrap only the others; off: every next observation is bootstrapped (the
    learner links when ``segment_turns > 1``). ``next_values``: per turn, its ``V'(s_{t+1}^0)`` as an
    earlier pass computed it (:mod:`vlmq.data.lanes`), or ``None``; turns with one skip the bootstrap
    pass (``TrainBatch.next_value``)."""
    images = [decode_png(s.image, s.where) for s in samples]
    ids = [s.response_ids for s in samples]
    extra = {"response_ids": ids} if any(x is not None for x in ids) else {}
    inputs = policy.encode(images, [s.prompt for s in samples], [s.response for s in samples], **extra)
    next_row = link_rows(samples, inputs["response_mask"].cpu()) if link else None
    linked = set() if next_row is None else {i for i, r in enumerate(next_row.tolist()) if r >= 0}
    carried = None
    if next_values is not None:
        if len(next_values) != len(samples):
            raise ValueError(f"{len(next_values)} next values for {len(samples)} turns")
        carried = torch.tensor(
            [
                float("nan") if v is None or s.next_image is None else float(v)
                for v, s in zip(next_values, samples, strict=True)
            ]
        )
        linked |= {i for i, v in enumerate(carried.tolist()) if v == v}  # not NaN
    with_next = [i for i, s in enumerate(samples) if s.next_image is not None and i not in linked]
    next_index = torch.full((len(samples),), -1, dtype=torch.long)
    next_inputs = None
    if with_next:
        next_images = [decode_png(samples[i].next_image, f"{samples[i].where} (next)") for i in with_next]  # type: ignore[arg-type]
        next_inputs = policy.encode(next_images, [samples[i].next_prompt for i in with_next])  # type: ignore[misc]
        next_index[with_next] = torch.arange(len(with_next))
    has_next = next_index >= 0
    if next_row is not None:
        has_next |= next_row >= 0
    if carried is not None:
        has_next |= ~carried.isnan()
    return TrainBatch(
        inputs=inputs,
        rewards=torch.tensor([s.reward for s in samples], dtype=torch.float32),
        terminated=torch.tensor([s.terminated for s in samples], dtype=torch.bool),
        truncated=torch.tensor([s.truncated for s in samples], dtype=torch.bool),
        has_next=has_next,
        next_inputs=next_inputs,
        next_index=next_index,
        next_row=next_row,
        next_value=carried,
    )


class OfflineStream:
    """Endless seeded stream of :class:`TurnSample` over a store, one buffer of shards in memory.

    Epoch ``e`` uses the store's first ``num_shards`` shards (the count when the epoch began: shards
    appended later join the next epoch), visits them in the order ``permutation(seed, e)``, cuts that
    order into buffers of consecutive shards holding at most ``buffer_turns`` turns (at least one
    shard), and visits each buffer's turns in the order ``permutation(seed, e, buffer)``. With
    ``segment_turns > 1`` that permutation orders the buffer's segments (:func:`episode_segments`)
    instead, and each segment's turns follow in turn order (a segment may be cut between two
    :meth:`take` calls); with 1 the order is exactly the turn permutation. The cursor
    ``(epoch, buffer, pos, num_shards)`` plus the seed is the whole state: :meth:`state_dict` /
    :meth:`load_state_dict` resume the exact same stream.
    """

    def __init__(
        self, store: EpisodeStore, seed: int = 0, buffer_turns: int = 2048, segment_turns: int = 1
    ) -> None:
        self.store = store
        self.seed = int(seed)
        self.buffer_turns = int(buffer_turns)
        self.segment_turns = max(1, int(segment_turns))
        self.epoch = 0
        self.buffer = 0
        self.pos = 0
        self._shards = store.shards()
        if not self._shards:
            raise DataError(f"{store.path}: dataset is empty (no episodes; `vlmq collect` writes some)")
        self.num_shards = len(self._shards)
        self._rows: dict[str, int] = {}  # shard name -> turns (shards never change once written)
        self._groups: list[list[int]] | None = None
        self._loaded: tuple[int, int] | None = None
        self._samples: list[TurnSample] = []
        self._order: np.ndarray = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ layout of an epoch
    def _turns(self, shard: Path) -> int:
        if shard.name not in self._rows:
            self._rows[shard.name] = self.store._open(shard).metadata.num_rows
        return self._rows[shard.name]

    def _epoch_groups(self) -> list[list[int]]:
        if self._groups is None:
            if len(self._shards) < self.num_shards:
                self._shards = self.store.shards()
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_shards)
            groups: list[list[int]] = []
            size = 0
            for i in (int(x) for x in order):
                n = self._turns(self._shards[i])
                if groups and size + n <= self.buffer_turns:
                    groups[-1].append(i)
                    size += n
                else:
                    groups.append([i])
                    size = n
            self._groups = groups
        return self._groups

    def _load(self) -> None:
        key = (self.epoch, self.buffer)
        if self._loaded == key:
            return
        self._samples, self._loaded = [], None  # free the previous buffer before reading the next
        samples: list[TurnSample] = []
        for i in self._epoch_groups()[self.buffer]:
            shard = self._shards[i]
            samples += samples_from_rows(self.store.read_shard(shard, SAMPLE_COLUMNS), where=str(shard))
        self._samples = samples
        rng = np.random.default_rng([self.seed, self.epoch, self.buffer])
        if self.segment_turns == 1:
            self._order = rng.permutation(len(samples))
        else:
            segments = episode_segments(samples, self.segment_turns)
            order = [i for k in rng.permutation(len(segments)) for i in segments[int(k)]]
            self._order = np.asarray(order, dtype=np.int64)
        self._loaded = key

    def _next_epoch(self) -> None:
        self.epoch += 1
        self.buffer = self.pos = 0
        self._shards = self.store.shards()  # the store may have grown
        self.num_shards = len(self._shards)
        self._groups = None

    # ------------------------------------------------------------------ reading
    def take(self, n: int) -> list[TurnSample]:
        """The next ``n`` samples (crossing buffer and epoch boundaries)."""
        out: list[TurnSample] = []
        while len(out) < n:
            self._load()
            if self.pos >= len(self._order):
                self.pos = 0
                self.buffer += 1
                if self.buffer >= len(self._epoch_groups()):
                    self._next_epoch()
                continue
            out.append(self._samples[int(self._order[self.pos])])
            self.pos += 1
        return out

    def __iter__(self) -> Iterator[TurnSample]:
        while True:
            yield from self.take(1)

    def state_dict(self) -> dict[str, int]:
        """The data cursor: epoch, buffer and position in it, shards in this epoch, seed."""
        return {
            "epoch": self.epoch,
            "buffer": self.buffer,
            "pos": self.pos,
            "num_shards": self.num_shards,
            "seed": self.seed,
            "buffer_turns": self.buffer_turns,
            "segment_turns": self.segment_turns,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.buffer = int(state["buffer"])
        self.pos = int(state["pos"])
        self.seed = int(state.get("seed", self.seed))
        self.buffer_turns = int(state.get("buffer_turns", self.buffer_turns))
        self.segment_turns = int(state.get("segment_turns", self.segment_turns))
        self._shards = self.store.shards()
        self.num_shards = int(state.get("num_shards", len(self._shards)))
        if self.num_shards > len(self._shards):
            raise ValueError(
                f"{self.store.path}: the saved data cursor needs {self.num_shards} shards, "
                f"the dataset holds {len(self._shards)}"
            )
        self._groups = None
        self._loaded = None
