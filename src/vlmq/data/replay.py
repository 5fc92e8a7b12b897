"""The replay store of online training (AMAGO's split): protected offline data + a FIFO of online episodes.

Offline episodes are never evicted; they are streamed by :class:`~vlmq.data.batches.OfflineStream`.
Online episodes are appended atomically to their own store (one shard per collection round) and the
newest ``capacity`` of them form the FIFO window that batches sample from (older ones stay on disk as
a record of the run but are never sampled again, and are not held in memory). Each batch takes
``round(online_fraction * n)`` of its turns uniformly from the window (once it holds any) and the
rest from the offline stream. The window follows the online store as it grows on disk (also when
other processes append to it: asynchronous collectors); only shards it has not read yet are read.

With ``segment_turns = K > 1`` both parts come in *segments* of up to ``K`` consecutive turns of one
episode (:func:`~vlmq.data.batches.episode_segments`): the offline stream shuffles segments, and the
online part draws segments uniformly from the window (every turn is in exactly one segment, so each
turn is still drawn with the same probability), the last one cut to fill the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmq.data.batches import SAMPLE_COLUMNS, OfflineStream, TurnSample, episode_segments, samples_from_rows
from vlmq.data.schema import Episode
from vlmq.data.store import EpisodeStore


class ReplayStore:
    """Offline data (protected) + online FIFO, mixed per batch (see module docstring)."""

    def __init__(
        self,
        online_dir: str | Path,
        offline: EpisodeStore | None = None,
        capacity: int = 2000,
        online_fraction: float = 0.5,
        seed: int = 0,
        buffer_turns: int = 2048,
        follow: bool = True,
        segment_turns: int = 1,
    ) -> None:
        if offline is None and online_fraction < 1.0:
            online_fraction = 1.0
        if not 0.0 <= online_fraction <= 1.0:
            raise ValueError("online_fraction must be in [0, 1]")
        self.online = EpisodeStore(online_dir, create=True)
        self.segment_turns = max(1, int(segment_turns))
        self.offline_stream = (
            OfflineStream(offline, seed, buffer_turns, self.segment_turns) if offline is not None else None
        )
        self.capacity = capacity
        self.online_fraction = online_fraction
        self.seed = seed
        self.follow = follow
        """Re-list the online store before every :meth:`sample` (off: only on :meth:`refresh`)."""
        self._window: list[tuple[str, list[TurnSample]]] = []  # (shard name, samples) newest last
        self._segments: list[list[TurnSample]] = []  # the window's segments (segment_turns > 1)
        self._episodes_in_window = 0
        self._seen: list[str] = []  # online shard names the window was built from
        self._cache: dict[str, list[tuple[str, list[TurnSample]]]] = {}  # shard name -> its episodes
        self.reload()

    # ------------------------------------------------------------------ online FIFO
    def reload(self, max_shards: int | None = None) -> None:
        """(Re)build the window from the newest ``capacity`` online episodes on disk, among the first
        ``max_shards`` shards if given (every process of a data-parallel run then sees the same ones).
        Shards already read are not read again."""
        window: list[tuple[str, list[TurnSample]]] = []
        segments: list[list[TurnSample]] = []
        count = 0
        shards = self.online.shards()[:max_shards]
        for i in range(len(shards) - 1, -1, -1):
            if count >= self.capacity:
                break
            episodes = self._read_episodes(shards[i])
            kept = episodes[-(self.capacity - count) :]  # the newest episodes of this shard
            window.insert(0, (shards[i].name, [s for _, samples in kept for s in samples]))
            if self.segment_turns > 1:
                segments[:0] = [
                    [samples[j] for j in seg]
                    for _, samples in kept
                    for seg in episode_segments(samples, self.segment_turns)
                ]
            count += len(kept)
        self._window = window
        self._segments = segments
        self._episodes_in_window = count
        self._seen = [p.name for p in shards]
        self._cache = {k: v for k, v in self._cache.items() if k in {n for n, _ in window}}

    def _read_episodes(self, shard: Path) -> list[tuple[str, list[TurnSample]]]:
        """The (episode id, turn samples) of one online shard, in append order (cached by name)."""
        if shard.name not in self._cache:
            rows = self.online.read_shard(shard, SAMPLE_COLUMNS)
            by_episode: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                by_episode.setdefault(r["episode_id"], []).append(r)
            self._cache[shard.name] = [
                (ep, samples_from_rows(ep_rows, where=str(shard))) for ep, ep_rows in by_episode.items()
            ]
        return self._cache[shard.name]

    def refresh(self, max_shards: int | None = None) -> bool:
        """Reload the window if online shards were appended (e.g. by another process) since the last
        read (up to ``max_shards`` of them if given); returns whether it did."""
        names = [p.name for p in self.online.shards()[:max_shards]]
        if names != self._seen:
            self.reload(max_shards)
            return True
        return False

    def add(self, episodes: Sequence[Episode]) -> None:
        """Append online episodes (atomically, one shard) and slide the FIFO window."""
        self.online.append(episodes)
        self.reload()

    def truncate_online(self, num_shards: int) -> None:
        """Delete online shards beyond the first ``num_shards``: rolls back to a checkpoint's state, so
        episodes collected after it (by a run that was then killed) are collected again on resume."""
        for shard in self.online.shards()[num_shards:]:
            shard.unlink(missing_ok=True)
        self.reload()

    @property
    def num_window_shards(self) -> int:
        """Online shards on disk when the window was last built (the window is among them)."""
        return len(self._seen)

    @property
    def num_online_episodes(self) -> int:
        return self._episodes_in_window

    def online_samples(self) -> list[TurnSample]:
        return [s for _, samples in self._window for s in samples]

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, rng: np.random.Generator) -> list[TurnSample]:
        """``n`` turns: ``round(online_fraction * n)`` uniformly from the online window (if any), the
        rest from the offline stream (or also online when there is no offline data); in segments when
        ``segment_turns > 1`` (module docstring)."""
        if self.follow:
            self.refresh()
        online = self.online_samples()
        n_on = round(self.online_fraction * n) if online else 0
        if self.offline_stream is None:
            if not online:
                raise ValueError("replay is empty: no offline data and no online episodes yet")
            n_on = n
        out = self.offline_stream.take(n - n_on) if self.offline_stream is not None and n_on < n else []
        if n_on and self.segment_turns == 1:
            out += [online[int(i)] for i in rng.integers(0, len(online), n_on)]
        elif n_on:
            picked: list[TurnSample] = []
            for i in rng.integers(0, len(self._segments), n_on):  # at most n_on segments are needed
                picked += self._segments[int(i)][: n_on - len(picked)]
                if len(picked) == n_on:
                    break
            out += picked
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "offline": self.offline_stream.state_dict() if self.offline_stream else None,
            "online_shards": self.num_window_shards,
        }

    def load_state_dict(self, state: dict[str, Any], truncate: bool = True) -> None:
        """Restore the offline cursor; with ``truncate``, also roll the online store back to the
        checkpoint (without: keep episodes appended since, e.g. by asynchronous collectors)."""
        if self.offline_stream is not None and state.get("offline"):
            self.offline_stream.load_state_dict(state["offline"])
        if truncate:
            self.truncate_online(int(state.get("online_shards", 0)))
        else:
            self.reload()
