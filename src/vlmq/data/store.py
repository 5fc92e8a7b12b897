"""A dataset folder of Parquet shards, appended atomically and read shard by shard.

Layout: ``meta.json`` and ``shard-00000.parquet``, ``shard-00001.parquet``, ... Each ``append`` writes
one shard under a temporary name, fsyncs it and renames it into place, so readers (also while the
store grows) only ever see complete shards, and a ``kill -9`` at any moment leaves every fully written
episode and no partial one. A store has one writer at a time.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmq.data.schema import COLUMNS, SCHEMA_VERSION, DataError, Episode, features
from vlmq.utils.io import atomic_write, atomic_write_json

_SHARD = re.compile(r"^shard-(\d{5,})\.parquet$")


class EpisodeStore:
    """Episodes on disk (see module docstring). ``create=True`` makes the folder if needed."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            if not create:
                raise DataError(f"{self.path}: no such dataset folder")
            self.path.mkdir(parents=True)
        meta = self.path / "meta.json"
        if meta.is_file():
            try:
                version = json.loads(meta.read_text()).get("schema_version")
            except json.JSONDecodeError:
                raise DataError(f"{meta}: corrupted meta.json") from None
            if version != SCHEMA_VERSION:
                raise DataError(f"{meta}: schema version {version}, this vlmq reads version {SCHEMA_VERSION}")
        elif create:
            atomic_write_json(meta, {"schema_version": SCHEMA_VERSION, "format": "vlmq-episodes"})
        elif not self.shards():
            raise DataError(f"{self.path}: not a vlmq dataset (no meta.json and no shards)")

    # ------------------------------------------------------------------ writing
    def append(self, episodes: Sequence[Episode]) -> Path | None:
        """Write ``episodes`` as one new shard, atomically. Returns the shard path."""
        if not episodes:
            return None
        rows = [r for ep in episodes for r in ep.rows()]
        table = pa.Table.from_pylist(rows, schema=features().arrow_schema)
        existing = self.shards()
        index = int(_SHARD.match(existing[-1].name).group(1)) + 1 if existing else 0  # type: ignore[union-attr]
        target = self.path / f"shard-{index:05d}.parquet"
        atomic_write(target, lambda tmp: pq.write_table(table, tmp))
        return target

    # ------------------------------------------------------------------ reading
    def shards(self) -> list[Path]:
        """Complete shards in append order (temporary files of an interrupted append are ignored)."""
        return sorted(p for p in self.path.iterdir() if _SHARD.match(p.name))

    def _open(self, shard: Path) -> pq.ParquetFile:
        try:
            pf = pq.ParquetFile(shard)
        except FileNotFoundError:
            raise DataError(f"{shard}: shard is missing") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{shard}: corrupted or truncated parquet ({exc})") from None
        names = set(pf.schema_arrow.names)
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise DataError(f"{shard}: not a vlmq episode shard (missing columns {missing})")
        return pf

    def read_shard(self, shard: Path, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """All rows of one shard as dicts (checks the schema version)."""
        pf = self._open(shard)
        try:
            table = pf.read(columns=list(columns) if columns else None)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{shard}: corrupted or truncated parquet ({exc})") from None
        rows = table.to_pylist()
        if rows and "schema_version" in rows[0] and rows[0]["schema_version"] != SCHEMA_VERSION:
            raise DataError(
                f"{shard}: schema version {rows[0]['schema_version']}, this vlmq reads version {SCHEMA_VERSION}"
            )
        return rows

    def iter_rows(self, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every turn row, shard by shard (one shard in memory at a time)."""
        for shard in self.shards():
            yield from self.read_shard(shard, columns)

    def iter_episodes(self) -> Iterator[Episode]:
        """Every episode (an episode never spans two shards)."""
        for shard in self.shards():
            by_ep: dict[str, list[dict[str, Any]]] = {}
            for r in self.read_shard(shard):
                by_ep.setdefault(r["episode_id"], []).append(r)
            for rows in by_ep.values():
                yield Episode.from_rows(rows, where=str(shard))

    @property
    def num_turns(self) -> int:
        return sum(self._open(s).metadata.num_rows for s in self.shards())

    @property
    def num_episodes(self) -> int:
        return len({r["episode_id"] for r in self.iter_rows(["episode_id"])})

    def stats(self) -> dict[str, Any]:
        """Episodes, turns, sources, success rate, mean return and valid-action rate."""
        cols = ["episode_id", "source", "valid", "success", "strict_success", "episode_return", "response"]
        episodes: dict[str, dict[str, Any]] = {}
        turns = valid = chars = 0
        for r in self.iter_rows(cols):
            turns += 1
            valid += bool(r["valid"])
            chars += len(r["response"] or "")
            episodes.setdefault(r["episode_id"], r)
        n = len(episodes)
        eps = list(episodes.values())
        return {
            "episodes": n,
            "turns": turns,
            "shards": len(self.shards()),
            "sources": dict(Counter(e["source"] for e in eps)),
            "success_rate": sum(e["success"] for e in eps) / n if n else 0.0,
            "strict_success_rate": sum(e["strict_success"] for e in eps) / n if n else 0.0,
            "mean_return": sum(e["episode_return"] for e in eps) / n if n else 0.0,
            "valid_rate": valid / turns if turns else 0.0,
            "mean_response_chars": chars / turns if turns else 0.0,
            "returns": [float(e["episode_return"]) for e in eps],
        }


def write_dataset(path: str | Path, episodes: Iterable[Episode], shard_episodes: int = 256) -> EpisodeStore:
    """Create (or extend) a store from an iterable of episodes, ``shard_episodes`` per shard."""
    store = EpisodeStore(path, create=True)
    buf: list[Episode] = []
    for ep in episodes:
        buf.append(ep)
        if len(buf) >= shard_episodes:
            store.append(buf)
            buf = []
    store.append(buf)
    return store
