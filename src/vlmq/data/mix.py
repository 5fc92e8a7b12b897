"""Datasets of mixed quality: merge, filter by source or success, sample fixed fractions per source.

Every operation streams episodes (as schema rows, images left as PNG bytes) from the inputs into a
new store, shard by shard; each episode keeps its ``source`` (``random``, ``expert``, ``noisy:0.2``,
``model:<name>``, ``online:<round>``). Outputs must be new (or empty) folders.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from vlmq.data.schema import DataError
from vlmq.data.store import EpisodeStore, Row, write_episode_rows


def _fresh(out: str | Path) -> Path:
    out = Path(out)
    if out.is_dir() and any(out.glob("shard-*.parquet")):
        raise DataError(f"{out}: output dataset already holds episodes; choose a new folder")
    return out


def merge(out: str | Path, inputs: Sequence[str | Path]) -> EpisodeStore:
    """All episodes of ``inputs``, in order, into a new store at ``out``."""
    stores = [EpisodeStore(p) for p in inputs]  # fail on a bad input before writing anything

    def episodes() -> Iterator[list[Row]]:
        for store in stores:
            yield from store.iter_episode_rows()

    return write_episode_rows(_fresh(out), episodes())


def matches(source: str, prefix: str) -> bool:
    """Whether ``source`` starts with ``prefix`` (``noisy`` matches ``noisy:0.2``, ``model`` all models)."""
    return source.startswith(prefix)


def filter_episodes(
    src: str | Path, out: str | Path, source: str | None = None, success: bool | None = None
) -> EpisodeStore:
    """Episodes of ``src`` whose source starts with ``source`` and/or whose success equals ``success``."""
    store = EpisodeStore(src)

    def keep(rows: list[Row]) -> bool:
        r = rows[0]
        return (source is None or matches(r["source"], source)) and (
            success is None or bool(r["success"]) == success
        )

    return write_episode_rows(_fresh(out), (rows for rows in store.iter_episode_rows() if keep(rows)))


def _ids(store: EpisodeStore, source: str | None = None) -> list[str]:
    """Episode ids in store order (optionally only those whose source matches)."""
    seen: dict[str, None] = {}
    for r in store.iter_turns(["episode_id", "source"]):
        if source is None or matches(r["source"], source):
            seen.setdefault(r["episode_id"], None)
    return list(seen)


def _counts(fracs: Sequence[float], total: int) -> list[int]:
    """Largest-remainder rounding of ``fracs * total`` (sums to ``total`` exactly)."""
    if any(f < 0 for f in fracs) or not 0.999 <= sum(fracs) <= 1.001:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fracs)}")
    raw = np.asarray(fracs, dtype=np.float64) / sum(fracs) * total
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def _pick(ids: list[str], want: int, rng: np.random.Generator, where: str) -> set[str]:
    if want > len(ids):
        raise ValueError(f"{where}: asked for {want} episodes, it holds {len(ids)}")
    return {ids[int(i)] for i in rng.choice(len(ids), size=want, replace=False)}


def sample_mixture(
    out: str | Path, parts: Sequence[tuple[str | Path, float]], total: int, seed: int = 0
) -> EpisodeStore:
    """``total`` episodes drawn without replacement (seeded), a fraction ``frac`` from each
    ``(dataset, frac)``; e.g. ``[("expert", 0.1), ("random", 0.9)]`` gives 10 % expert episodes."""
    counts = _counts([f for _, f in parts], total)
    rng = np.random.default_rng(seed)
    stores = [EpisodeStore(p) for p, _ in parts]
    picks = [_pick(_ids(s), c, rng, str(s.path)) for s, c in zip(stores, counts, strict=True)]

    def episodes() -> Iterator[list[Row]]:
        for store, pick in zip(stores, picks, strict=True):
            yield from (rows for rows in store.iter_episode_rows() if rows[0]["episode_id"] in pick)

    return write_episode_rows(_fresh(out), episodes())


def sample_by_source(
    src: str | Path, out: str | Path, fractions: Mapping[str, float], total: int, seed: int = 0
) -> EpisodeStore:
    """``total`` episodes of one (merged) dataset, a fixed fraction per source prefix (seeded), e.g.
    ``{"expert": 0.1, "noisy": 0.3, "random": 0.6}``."""
    counts = _counts(list(fractions.values()), total)
    rng = np.random.default_rng(seed)
    store = EpisodeStore(src)
    pick: set[str] = set()
    for (prefix, _), c in zip(fractions.items(), counts, strict=True):
        ids = [i for i in _ids(store, prefix) if i not in pick]
        pick |= _pick(ids, c, rng, f"{store.path} (source {prefix!r})")
    return write_episode_rows(
        _fresh(out), (rows for rows in store.iter_episode_rows() if rows[0]["episode_id"] in pick)
    )
