"""Mixed-quality datasets (merge, filter, per-source fractions) and the replay store's mixture."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.data.mix import filter_episodes, merge, sample_by_source, sample_mixture
from vlmq.data.replay import ReplayStore
from vlmq.data.schema import DataError, Episode, Turn
from vlmq.data.store import EpisodeStore, write_dataset


def _ep(eid: str, source: str, success: bool = False, turns: int = 1) -> Episode:
    img = np.full((4, 4, 3), 7, dtype=np.uint8)
    ts = [Turn(img, "o", f"{eid}/{t}", "r", "a", True, 1.0 if success else -1.0) for t in range(turns)]
    ts[-1].terminated = True
    return Episode(eid, "fake/Env", source, 0, ts, success=success)


def _sources(store: EpisodeStore) -> Counter[str]:
    return Counter(e[0]["source"] for e in store.iter_episode_rows(["source"]))


def test_merge_filter_and_fractions(tmp_path: Path) -> None:
    write_dataset(tmp_path / "exp", [_ep(f"x{i}", "expert", True) for i in range(10)])
    write_dataset(tmp_path / "noi", [_ep(f"n{i}", "noisy:0.2", i % 2 == 0) for i in range(10)])
    write_dataset(tmp_path / "rnd", [_ep(f"r{i}", "random") for i in range(20)], shard_episodes=7)
    merged = merge(tmp_path / "all", [tmp_path / "exp", tmp_path / "noi", tmp_path / "rnd"])
    assert _sources(merged) == {"expert": 10, "noisy:0.2": 10, "random": 20}
    assert filter_episodes(tmp_path / "all", tmp_path / "ok", success=True).num_episodes == 15
    assert _sources(filter_episodes(tmp_path / "all", tmp_path / "nz", source="noisy")) == {"noisy:0.2": 10}
    fr = {"expert": 0.1, "noisy": 0.3, "random": 0.6}
    a = sample_by_source(tmp_path / "all", tmp_path / "s1", fr, total=20, seed=3)
    assert _sources(a) == {"expert": 2, "noisy:0.2": 6, "random": 12}
    b = sample_by_source(tmp_path / "all", tmp_path / "s2", fr, total=20, seed=3)
    ids = [e[0]["episode_id"] for e in a.iter_episode_rows()]
    assert ids == [e[0]["episode_id"] for e in b.iter_episode_rows()]  # seeded
    c = sample_mixture(tmp_path / "s3", [(tmp_path / "exp", 1 / 3), (tmp_path / "rnd", 2 / 3)], total=10)
    assert sum(_sources(c).values()) == 10 and _sources(c)["expert"] in (3, 4)
    with pytest.raises(ValueError, match="asked for 5 episodes, it holds 0"):
        sample_by_source(tmp_path / "all", tmp_path / "s4", {"model": 0.5, "random": 0.5}, total=10)
    with pytest.raises(DataError, match="already holds episodes"):
        merge(tmp_path / "all", [tmp_path / "exp"])


def test_replay_fifo_by_episodes_keeps_offline_and_mixes(tmp_path: Path) -> None:
    offline = write_dataset(tmp_path / "off", [_ep(f"off{i}", "expert") for i in range(30)])
    replay = ReplayStore(tmp_path / "on", offline, capacity=12, online_fraction=0.25, seed=0)
    # 11 episodes per round: ids e0..e10 sort differently as text than in append order
    for r in range(3):
        replay.add([_ep(f"r{r}e{i}", f"online:{r}") for i in range(11)])
    window = {s.prompt.split("/")[0] for s in replay.online_samples()}
    assert replay.num_online_episodes == 12
    assert window == {"r1e10"} | {f"r2e{i}" for i in range(11)}  # the newest 12, in append order
    rng = np.random.default_rng(0)
    n_off = n_on = 0
    for _ in range(50):
        batch = replay.sample(8, rng)
        n_off += sum(s.prompt.startswith("off") for s in batch)
        n_on += sum(s.prompt.startswith("r") for s in batch)
    assert (n_off, n_on) == (300, 100)  # online_fraction of every batch
    assert EpisodeStore(tmp_path / "off").num_episodes == 30  # offline data never evicted
    # another process appending to the online store: the window follows it on the next sample
    EpisodeStore(tmp_path / "on").append([_ep("late", "online:3")])
    replay.sample(4, rng)
    assert "late" in {s.prompt.split("/")[0] for s in replay.online_samples()}
    assert replay.num_online_episodes == 12


def test_replay_pinned_to_a_shard_count_and_resume_without_truncation(tmp_path: Path) -> None:
    """Asynchronous collection: the learner decides when the window moves (the same shards in every
    process), and a resume keeps what the collectors appended after the checkpoint."""
    replay = ReplayStore(tmp_path / "on", None, capacity=100, follow=False)
    writer = EpisodeStore(tmp_path / "on")  # a collector
    writer.append([_ep("a", "online:c0")])
    with pytest.raises(ValueError, match="replay is empty"):
        replay.sample(2, np.random.default_rng(0))  # not followed until refresh
    writer.append([_ep("b", "online:c0")])
    assert replay.refresh(max_shards=1) and replay.num_online_episodes == 1
    assert not replay.refresh(max_shards=1)
    assert {s.prompt for s in replay.sample(4, np.random.default_rng(0))} == {"a/0"}
    state = replay.state_dict()
    writer.append([_ep("c", "online:c1")])
    kept = ReplayStore(tmp_path / "on", None, capacity=100, follow=False)
    kept.load_state_dict(state, truncate=False)
    assert kept.num_online_episodes == 3 and replay.refresh() and replay.num_online_episodes == 3
    rolled = ReplayStore(tmp_path / "on", None, capacity=100)
    rolled.load_state_dict(state)  # synchronous rounds: back to the checkpoint, redone on resume
    assert rolled.num_online_episodes == 1 and writer.num_episodes == 1


def test_online_only_replay(tmp_path: Path) -> None:
    replay = ReplayStore(tmp_path / "on", None, capacity=2)
    with pytest.raises(ValueError, match="replay is empty"):
        replay.sample(2, np.random.default_rng(0))
    replay.add([_ep("a", "online:0", turns=3)])
    assert len(replay.sample(5, np.random.default_rng(0))) == 5


def test_cli_merge_filter_mix_sample(tmp_path: Path) -> None:
    write_dataset(tmp_path / "exp", [_ep(f"x{i}", "expert", True) for i in range(4)])
    write_dataset(tmp_path / "rnd", [_ep(f"r{i}", "random") for i in range(6)])
    run = CliRunner().invoke
    r = run(app, ["data", "merge", str(tmp_path / "all"), str(tmp_path / "exp"), str(tmp_path / "rnd")])
    assert r.exit_code == 0 and "10 episodes" in r.output, r.output
    r = run(app, ["data", "filter", str(tmp_path / "all"), str(tmp_path / "win"), "--success"])
    assert r.exit_code == 0 and "4 episodes" in r.output, r.output
    r = run(app, ["data", "mix", str(tmp_path / "mix"), "--from", f"{tmp_path / 'exp'}:0.5",
                  "--from", f"{tmp_path / 'rnd'}:0.5", "--total", "8"])  # fmt: skip
    assert r.exit_code == 0 and "8 episodes" in r.output, r.output
    r = run(app, ["data", "sample", str(tmp_path / "all"), str(tmp_path / "s"), "--frac", "expert=0.25",
                  "--frac", "random=0.75", "--total", "4"])  # fmt: skip
    assert r.exit_code == 0 and "4 episodes" in r.output, r.output
    r = run(app, ["data", "info", str(tmp_path / "s")])
    assert "expert=1, random=3" in r.output, r.output
    r = run(app, ["data", "merge", str(tmp_path / "bad"), str(tmp_path / "missing")])
    assert r.exit_code == 1 and "no such dataset folder" in r.output
