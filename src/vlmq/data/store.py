"""A dataset folder of Parquet shards, appended atomically and read shard by shard.

Layout: ``meta.json`` and ``shard-00000.parquet``, ``shard-00001.parquet``, ... Each ``append`` writes
one shard under a temporary name (``.shard.<random>.tmp``), fsyncs it, links it into place under the
next free shard number and fsyncs the folder, so readers (also while the store grows) only ever see
complete shards, and a ``kill -9`` at any moment leaves every fully written episode and no partial one.
An episode never spans two shards. Several processes may append to one store at once (e.g. online
collectors, also on other machines sharing the folder): a hard link never replaces an existing file,
so each shard number goes to exactly one writer. An ``append`` removes temporary files that a killed
writer left behind more than :data:`STALE_TEMP_S` seconds ago.

Every problem with the data on disk is a :class:`~vlmq.data.schema.DataError` whose one-line message
names the file: missing folder or shard, truncated or corrupted Parquet, another schema version,
wrong columns, an image that does not decode.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmq.data.schema import (
    OPTIONAL_COLUMNS,
    SCHEMA_VERSION,
    DataError,
    Episode,
    arrow_schema,
    check_schema,
)
from vlmq.utils.io import atomic_write_json, fsync_dir

_SHARD = re.compile(r"^shard-(\d{5,})\.parquet$")
_TEMP = re.compile(r"^\.shard.*\.tmp$")
STALE_TEMP_S = 600.0
"""Age after which a temporary shard file counts as left behind by a killed writer."""
_READ_ERRORS = (pa.ArrowException, OSError, ValueError)

Row = dict[str, Any]


class EpisodeStore:
    """Episodes on disk (see module docstring). ``create=True`` makes the folder if needed."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            if self.path.exists():
                raise DataError(f"{self.path}: not a folder")
            if not create:
                raise DataError(f"{self.path}: no such dataset folder")
            self.path.mkdir(parents=True)
        meta = self.path / "meta.json"
        if meta.is_file():
            try:
                version = json.loads(meta.read_text()).get("schema_version")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                raise DataError(f"{meta}: corrupted meta.json") from None
            if version != SCHEMA_VERSION:
                raise DataError(f"{meta}: schema version {version}, this vlmq reads version {SCHEMA_VERSION}")
        elif create:
            atomic_write_json(meta, {"schema_version": SCHEMA_VERSION, "format": "vlmq-episodes"})
        elif not self.shards():
            raise DataError(f"{self.path}: not a vlmq dataset (no meta.json and no shards)")

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.path)!r})"

    # ------------------------------------------------------------------ writing
    def append(self, episodes: Sequence[Episode]) -> Path | None:
        """Write ``episodes`` as one new shard, atomically. Returns the shard path (``None`` if empty)."""
        return self.append_rows([r for ep in episodes for r in ep.rows()])

    def append_rows(self, rows: Sequence[Row]) -> Path | None:
        """Write schema rows of whole episodes (e.g. copied from another store) as one new shard."""
        if not rows:
            return None
        table = pa.Table.from_pylist(list(rows), schema=arrow_schema())
        now = time.time()
        for tmp in self.path.iterdir():  # leftovers of a writer killed mid-append
            if _TEMP.match(tmp.name):
                with contextlib.suppress(FileNotFoundError):
                    if now - tmp.stat().st_mtime > STALE_TEMP_S:
                        tmp.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(prefix=".shard.", suffix=".tmp", dir=self.path)
        os.close(fd)
        tmp = Path(name)
        try:
            pq.write_table(table, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            target = self._claim(tmp)
            fsync_dir(self.path)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def _claim(self, tmp: Path) -> Path:
        """Put the complete file ``tmp`` in place as the next free shard number and return that path."""
        existing = self.shards(check=False)
        index = _index(existing[-1]) + 1 if existing else 0
        while True:
            target = self.path / f"shard-{index:05d}.parquet"
            try:
                os.link(tmp, target)  # fails if another writer took this number meanwhile
                return target
            except FileExistsError:
                index += 1
            except OSError:  # a file system without hard links: one writer at a time
                if target.exists():
                    index += 1
                    continue
                os.replace(tmp, target)
                return target

    # ------------------------------------------------------------------ reading
    def shards(self, check: bool = True) -> list[Path]:
        """Complete shards in append order (temporary files of an interrupted append are ignored).

        With ``check``, a gap in the numbering (a deleted shard) is a :class:`DataError`.
        """
        try:
            names = [p for p in self.path.iterdir() if _SHARD.match(p.name)]
        except FileNotFoundError:
            raise DataError(f"{self.path}: no such dataset folder") from None
        shards = sorted(names, key=_index)
        if check:
            for expect, shard in enumerate(shards):
                if _index(shard) != expect:
                    raise DataError(f"{self.path / f'shard-{expect:05d}.parquet'}: shard is missing")
        return shards

    def _open(self, shard: Path) -> pq.ParquetFile:
        try:
            pf = pq.ParquetFile(shard)
        except FileNotFoundError:
            raise DataError(f"{shard}: shard is missing") from None
        except _READ_ERRORS as exc:
            raise DataError(f"{shard}: corrupted or truncated parquet ({_short(exc)})") from None
        check_schema(pf.schema_arrow, str(shard))
        return pf

    def read_table(self, shard: Path, columns: Sequence[str] | None = None) -> pa.Table:
        """One shard as an Arrow table (schema checked); optional columns the shard predates
        (:data:`~vlmq.data.schema.OPTIONAL_COLUMNS`) come back as nulls."""
        pf = self._open(shard)
        have = set(pf.schema_arrow.names)
        wanted = list(dict.fromkeys(columns or [*pf.schema_arrow.names, *OPTIONAL_COLUMNS]))
        absent = [c for c in OPTIONAL_COLUMNS if c in wanted and c not in have]
        try:
            table = pf.read(columns=[c for c in wanted if c not in absent])
        except _READ_ERRORS as exc:
            raise DataError(f"{shard}: corrupted or truncated parquet ({_short(exc)})") from None
        for c in absent:
            field = arrow_schema().field(c)
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        if "schema_version" in table.column_names and table.num_rows:
            versions = set(table.column("schema_version").to_pylist())
            if versions != {SCHEMA_VERSION}:
                bad = sorted(v for v in versions if v != SCHEMA_VERSION)
                raise DataError(f"{shard}: schema version {bad[0]}, this vlmq reads version {SCHEMA_VERSION}")
        return table

    def read_shard(self, shard: Path, columns: Sequence[str] | None = None) -> list[Row]:
        """All rows of one shard as dicts (images stay PNG bytes)."""
        return self.read_table(shard, columns).to_pylist()

    def iter_turns(self, columns: Sequence[str] | None = None) -> Iterator[Row]:
        """Every turn row (a dict of the schema's columns), shard by shard: one shard in memory."""
        for shard in self.shards():
            yield from self.read_shard(shard, columns)

    def iter_episode_rows(self, columns: Sequence[str] | None = None) -> Iterator[list[Row]]:
        """The rows of each episode (sorted by turn), shard by shard, images not decoded."""
        cols = None if columns is None else list(dict.fromkeys(["episode_id", "turn", *columns]))
        for shard in self.shards():
            by_ep: dict[str, list[Row]] = {}
            for r in self.read_shard(shard, cols):
                by_ep.setdefault(r["episode_id"], []).append(r)
            for rows in by_ep.values():
                yield sorted(rows, key=lambda r: r["turn"])

    def iter_episodes(self) -> Iterator[Episode]:
        """Every episode, images decoded, shard by shard (one shard in memory at a time)."""
        for shard in self.shards():
            by_ep: dict[str, list[Row]] = {}
            for r in self.read_shard(shard):
                by_ep.setdefault(r["episode_id"], []).append(r)
            for rows in by_ep.values():
                yield Episode.from_rows(rows, where=str(shard))

    def __iter__(self) -> Iterator[Episode]:
        return self.iter_episodes()

    @property
    def num_turns(self) -> int:
        """Turns (rows) in all shards, from the Parquet footers (no data read)."""
        return sum(self._open(s).metadata.num_rows for s in self.shards())

    @property
    def num_episodes(self) -> int:
        return sum(
            len(set(self.read_table(s, ["episode_id"]).column("episode_id").to_pylist()))
            for s in self.shards()
        )

    def __len__(self) -> int:
        return self.num_episodes

    def stats(self) -> dict[str, Any]:
        """Episodes, turns, sources, success rate, mean return, valid-action rate, response length."""
        cols = ["episode_id", "source", "valid", "success", "strict_success", "episode_return", "response"]
        episodes: dict[str, Row] = {}
        turns = valid = chars = words = 0
        for r in self.iter_turns(cols):
            turns += 1
            valid += bool(r["valid"])
            resp = r["response"] or ""
            chars += len(resp)
            words += len(resp.split())
            episodes.setdefault(r["episode_id"], r)
        n = len(episodes)
        eps = list(episodes.values())
        by_source: dict[str, list[Row]] = {}
        for e in eps:
            by_source.setdefault(e["source"], []).append(e)
        return {
            "episodes": n,
            "turns": turns,
            "shards": len(self.shards()),
            "sources": dict(Counter(e["source"] for e in eps)),
            "success_by_source": {
                s: sum(e["success"] for e in es) / len(es) for s, es in sorted(by_source.items())
            },
            "success_rate": sum(e["success"] for e in eps) / n if n else 0.0,
            "strict_success_rate": sum(e["strict_success"] for e in eps) / n if n else 0.0,
            "mean_return": sum(e["episode_return"] for e in eps) / n if n else 0.0,
            "valid_rate": valid / turns if turns else 0.0,
            "mean_turns": turns / n if n else 0.0,
            "response_chars": chars,
            "response_words": words,
            "mean_response_chars": chars / turns if turns else 0.0,
            "returns": [float(e["episode_return"]) for e in eps],
        }

    def to_hf(self) -> Any:
        """The store as a ``datasets.Dataset`` (memory-mapped Arrow; images stay PNG bytes; read into
        memory when some shard predates the optional columns)."""
        from datasets import Dataset
        from datasets.table import InMemoryTable

        from vlmq.data.schema import features

        shards = self.shards()
        if not shards:
            return Dataset.from_list([], features=features())
        if all(set(OPTIONAL_COLUMNS) <= set(self._open(s).schema_arrow.names) for s in shards):
            return Dataset.from_parquet([str(s) for s in shards], features=features())
        # shards that predate the optional columns: read (in memory) with those filled in as nulls
        table = pa.concat_tables([self.read_table(s).select(list(features())) for s in shards])
        return Dataset(InMemoryTable(table.cast(arrow_schema())))


def _index(shard: Path) -> int:
    m = _SHARD.match(shard.name)
    assert m is not None
    return int(m.group(1))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


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


def write_episode_rows(
    path: str | Path, episodes: Iterable[list[Row]], shard_episodes: int = 256
) -> EpisodeStore:
    """Like :func:`write_dataset` for episodes given as schema rows (copies without decoding images)."""
    store = EpisodeStore(path, create=True)
    buf: list[Row] = []
    count = 0
    for rows in episodes:
        buf.extend(rows)
        count += 1
        if count >= shard_episodes:
            store.append_rows(buf)
            buf, count = [], 0
    store.append_rows(buf)
    return store
