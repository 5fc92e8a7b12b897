"""The Parquet store: clear errors, temp files, reading while another process appends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.data.schema import SCHEMA_VERSION, DataError, Episode, Turn, arrow_schema, decode_png, encode_png
from vlmq.data.store import STALE_TEMP_S, EpisodeStore, write_dataset


def _ep(eid: str, n: int = 2) -> Episode:
    img = np.full((5, 7, 3), 3, dtype=np.uint8)
    turns = [Turn(img, "o", f"p{t}", "r", "a", True, 1.0) for t in range(n)]
    turns[-1].terminated = True
    return Episode(eid, "fake/Env", "random", 0, turns, img, "final", True, False)


def test_png_round_trip_and_bad_png() -> None:
    img = np.random.default_rng(0).integers(0, 255, (9, 11, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(img)), img)
    with pytest.raises(DataError, match="somewhere: image does not decode"):
        decode_png(b"\x89PNG broken", "somewhere")


def test_missing_shard_is_named(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", [_ep(f"e{i}") for i in range(3)], shard_episodes=1)
    store.shards()[1].unlink()
    with pytest.raises(DataError, match=r"shard-00001\.parquet: shard is missing"):
        list(EpisodeStore(tmp_path / "ds").iter_turns())
    with pytest.raises(DataError, match=r"shard-00009\.parquet: shard is missing"):
        store.read_shard(tmp_path / "ds" / "shard-00009.parquet")


def test_other_schema_version_and_wrong_columns(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", [_ep("e0")])
    shard = store.shards()[0]
    table = pq.read_table(shard)
    meta = dict(table.schema.metadata)
    meta[b"vlmq.schema_version"] = b"7"
    pq.write_table(table.replace_schema_metadata(meta), shard)
    with pytest.raises(DataError, match=r"shard-00000\.parquet: schema version 7, this vlmq reads version"):
        store.num_turns  # noqa: B018
    pq.write_table(table.drop_columns(["prompt"]), shard)
    with pytest.raises(
        DataError, match=r"shard-00000\.parquet: not a vlmq episode shard \(missing columns prompt\)"
    ):
        list(store.iter_turns())
    bad = table.set_column(table.schema.get_field_index("reward"), "reward", pa.array(["x", "y"]))
    pq.write_table(bad, shard)
    with pytest.raises(DataError, match=r"wrong column types \(reward is string"):
        list(store.iter_episodes())
    (tmp_path / "ds" / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match=r"meta\.json: corrupted meta\.json"):
        EpisodeStore(tmp_path / "ds")
    (tmp_path / "ds" / "meta.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        EpisodeStore(tmp_path / "file")


def test_temp_files_are_invisible_and_cleaned(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", [_ep("e0")])
    leftover = tmp_path / "ds" / ".shard.abc123.tmp"
    leftover.write_bytes(b"half a shard")  # what a writer killed mid-append leaves
    fresh = tmp_path / "ds" / ".shard.def456.tmp"
    fresh.write_bytes(b"another writer's shard in progress")
    old = time.time() - STALE_TEMP_S - 1
    os.utime(leftover, (old, old))
    assert store.num_episodes == 1 and len(store.shards()) == 1
    store.append([_ep("e1")])
    assert not leftover.exists() and fresh.exists()  # a recent one may belong to a live writer
    assert [e.episode_id for e in store.iter_episodes()] == ["e0", "e1"]
    assert store.stats()["episodes"] == 2 and len(store) == 2
    with pytest.raises(ValueError, match="no turns"):
        store.append([Episode("empty", "fake/Env", "random", 0, [])])


def test_schema_metadata_and_hf_dataset(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", [_ep("e0", 3)])
    schema = pq.read_schema(store.shards()[0])
    assert schema.metadata[b"vlmq.schema_version"] == str(SCHEMA_VERSION).encode()
    assert schema.equals(arrow_schema(), check_metadata=False)
    ds = store.to_hf()
    assert len(ds) == 3 and ds[0]["episode_id"] == "e0" and isinstance(ds[0]["image"], bytes)


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from vlmq.data.schema import Episode, Turn
    from vlmq.data.store import EpisodeStore
    store = EpisodeStore(sys.argv[1], create=True)
    rng = np.random.default_rng(0)
    for k in range(int(sys.argv[2])):
        img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        eps = []
        for j in range(10):
            turns = [Turn(img, "o", "p", "r", "a", True, 1.0) for _ in range(2)]
            turns[-1].terminated = True
            eps.append(Episode(f"{sys.argv[3]}s{k}e{j}", "x/y", "random", k, turns))
        store.append(eps)
    """
)


def test_readers_see_whole_shards_while_the_store_grows(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ds"), "40", "w"])
    counts = []
    try:
        deadline = time.time() + 30
        while proc.poll() is None and time.time() < deadline:
            if (tmp_path / "ds" / "meta.json").exists():
                store = EpisodeStore(tmp_path / "ds")
                n = sum(len(e.turns) == 2 for e in store.iter_episodes())
                counts.append(n)
            time.sleep(0.01)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert all(c % 10 == 0 for c in counts) and counts == sorted(counts)
    assert EpisodeStore(tmp_path / "ds").num_episodes == 400


def test_concurrent_writers_each_get_their_own_shards(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    EpisodeStore(tmp_path / "ds", create=True)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / "ds"), "20", name]) for name in "abc"
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    store = EpisodeStore(tmp_path / "ds")
    assert len(store.shards()) == 60  # numbered without gaps (checked), none overwritten
    ids = [e.episode_id for e in store.iter_episodes()]
    assert len(ids) == len(set(ids)) == 600
    assert not list((tmp_path / "ds").glob(".*.tmp"))


def test_cli_reports_a_corrupted_shard_in_one_line(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", [_ep("e0")])
    shard = store.shards()[0]
    shard.write_bytes(shard.read_bytes()[:100])
    r = CliRunner().invoke(app, ["data", "info", str(tmp_path / "ds")])
    assert r.exit_code == 1
    assert "shard-00000.parquet: corrupted or truncated parquet" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
