"""Datasets of mixed quality: merge, filter by source or success, sample fixed fractions per source.

Every operation streams episodes from the inputs into a new store; each episode keeps its ``source``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vlmq.data.schema import Episode
from vlmq.data.store import EpisodeStore, write_dataset


def merge(out: str | Path, inputs: Sequence[str | Path]) -> EpisodeStore:
    """All episodes of ``inputs``, in order, into a new store at ``out``."""

    def episodes() -> Iterator[Episode]:
        for path in inputs:
            yield from EpisodeStore(path).iter_episodes()

    return write_dataset(out, episodes())


def filter_episodes(
    src: str | Path, out: str | Path, source: str | None = None, success: bool | None = None
) -> EpisodeStore:
    """Episodes of ``src`` whose source starts with ``source`` and/or whose success equals ``success``."""

    def keep(ep: Episode) -> bool:
        return (source is None or ep.source.startswith(source)) and (success is None or ep.success == success)

    return write_dataset(out, (ep for ep in EpisodeStore(src).iter_episodes() if keep(ep)))


def sample_mixture(
    out: str | Path, parts: Sequence[tuple[str | Path, float]], total: int, seed: int = 0
) -> EpisodeStore:
    """``total`` episodes drawn without replacement, ``round(frac * total)`` from each ``(dataset, frac)``.

    E.g. ``[("expert", 0.1), ("random", 0.9)]`` gives 10 % expert and 90 % random episodes.
    """
    fracs = [f for _, f in parts]
    if any(f < 0 for f in fracs) or not 0.999 <= sum(fracs) <= 1.001:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fracs}")
    rng = np.random.default_rng(seed)
    chosen: list[Episode] = []
    for path, frac in parts:
        want = round(frac * total)
        store = EpisodeStore(path)
        ids = sorted({r["episode_id"] for r in store.iter_rows(["episode_id"])})
        if want > len(ids):
            raise ValueError(f"{path}: asked for {want} episodes, it holds {len(ids)}")
        pick = {ids[i] for i in rng.choice(len(ids), size=want, replace=False)}
        chosen.extend(ep for ep in store.iter_episodes() if ep.episode_id in pick)
    return write_dataset(out, chosen)
