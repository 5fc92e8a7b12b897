"""Episode data: round trips, atomic appends under SIGKILL, clear errors, batches, replay, mixtures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.data.batches import OfflineStream, make_batch, samples_from_rows
from vlmq.data.mix import filter_episodes, merge, sample_mixture
from vlmq.data.replay import ReplayStore
from vlmq.data.schema import DataError, Episode, Turn
from vlmq.data.store import EpisodeStore, write_dataset
from vlmq.rollout import collect


def _img(v: int, shape: tuple[int, int] = (6, 5)) -> np.ndarray:
    a = np.zeros((*shape, 3), dtype=np.uint8)
    a[..., 0] = v
    a[0, 0] = (1, 2, 3)
    return a


def _episode(eid: str, n_turns: int = 2, truncated: bool = False, source: str = "random") -> Episode:
    turns = [
        Turn(
            _img(10 * t), f"obs {t}", f"prompt {t}", f"resp {t}", f"a{t}", t % 2 == 0, float(t), False, False
        )
        for t in range(n_turns)
    ]
    turns[-1].terminated = not truncated
    turns[-1].truncated = truncated
    ep = Episode(eid, "gym_cards/NumberLine", source, 7, turns, _img(99), "final prompt", True, False)
    return ep


def test_round_trip_every_field(tmp_path: Path) -> None:
    eps = [_episode("e1", 3, truncated=True), _episode("e2", 1, source="expert")]
    store = write_dataset(tmp_path / "ds", eps)
    back = {e.episode_id: e for e in EpisodeStore(tmp_path / "ds").iter_episodes()}
    assert set(back) == {"e1", "e2"}
    for ep in eps:
        got = back[ep.episode_id]
        for f in ("env_id", "source", "seed", "final_prompt", "success", "strict_success"):
            assert getattr(got, f) == getattr(ep, f)
        assert np.array_equal(got.final_image, ep.final_image)  # type: ignore[arg-type]
        assert len(got.turns) == len(ep.turns)
        for a, b in zip(got.turns, ep.turns, strict=True):
            assert np.array_equal(a.image, b.image)
            for f in (
                "obs_text",
                "prompt",
                "response",
                "action",
                "valid",
                "reward",
                "terminated",
                "truncated",
            ):
                assert getattr(a, f) == getattr(b, f), f
    assert store.num_episodes == 2 and store.num_turns == 4
    rows = list(store.iter_turns())
    assert all(r["schema_version"] == 1 for r in rows)
    assert [r["final_image"] is not None for r in rows if r["episode_id"] == "e1"] == [False, False, True]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from vlmq.data.schema import Episode, Turn
    from vlmq.data.store import EpisodeStore
    store = EpisodeStore(sys.argv[1], create=True)
    rng = np.random.default_rng(0)
    k = 0
    print("ready", flush=True)
    while True:
        eps = []
        for _ in range(20):
            img = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)  # incompressible: slow writes
            turns = [Turn(img, "o", "p", "r", "a", True, 1.0, False, False) for _ in range(3)]
            turns[-1].terminated = True
            eps.append(Episode(f"ep{k}", "x/y", "random", k, turns, None, None, True, True))
            k += 1
        store.append(eps)
    """
)


def test_kill_during_append_leaves_a_consistent_store(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ds")], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    deadline = time.time() + 30
    while time.time() < deadline and len(list((tmp_path / "ds").glob("shard-*.parquet"))) < 3:
        time.sleep(0.05)
    time.sleep(0.13)  # land somewhere inside an append
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = EpisodeStore(tmp_path / "ds")
    eps = list(store.iter_episodes())
    assert len(eps) >= 60 and len(eps) % 20 == 0  # whole appends only
    assert all(len(e.turns) == 3 for e in eps)
    assert sorted(int(e.episode_id[2:]) for e in eps) == list(range(len(eps)))


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such dataset folder"):
        EpisodeStore(tmp_path / "missing")
    store = write_dataset(tmp_path / "ds", [_episode("e1"), _episode("e2")], shard_episodes=1)
    shard = store.shards()[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match=r"shard-00000\.parquet: corrupted or truncated"):
        list(EpisodeStore(tmp_path / "ds").iter_turns())
    shard.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="corrupted or truncated"):
        EpisodeStore(tmp_path / "ds").num_turns  # noqa: B018
    (tmp_path / "ds" / "meta.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(DataError, match="schema version 99"):
        EpisodeStore(tmp_path / "ds")


def test_bad_png_names_the_episode(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = write_dataset(tmp_path / "ds", [_episode("e1")])
    shard = store.shards()[0]
    table = pq.read_table(shard)
    images = table.column("image").to_pylist()
    images[0] = b"not a png"
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    pq.write_table(table, shard)
    with pytest.raises(DataError, match="episode e1 turn 0: image does not decode"):
        list(EpisodeStore(tmp_path / "ds").iter_episodes())


class FakePolicy:
    """encode: every prompt is [1, 1, 1], every response [5, 6] + end-of-turn 9."""

    def encode(self, images, prompts, responses=None):  # type: ignore[no-untyped-def]
        rows, masks = [], []
        for i in range(len(prompts)):
            ids = [1, 1, 1]
            mask = [False] * 3
            if responses is not None:
                ids += [5, 6, 9]
                mask += [True] * 3
            rows.append(ids)
            masks.append(mask)
            assert images[i].dtype == np.uint8
        out = {"input_ids": torch.tensor(rows), "prompts": prompts}
        if responses is not None:
            out["response_mask"] = torch.tensor(masks)
        return out


def test_batch_of_a_two_turn_episode() -> None:
    terminated = _episode("e", 2)
    truncated = _episode("t", 2, truncated=True)
    samples = samples_from_rows([*terminated.rows(), *truncated.rows()])
    assert [(s.prompt, s.next_prompt) for s in samples] == [
        ("prompt 0", "prompt 1"),  # e turn 0 -> next turn's prompt
        ("prompt 1", None),  # e turn 1 terminated: no bootstrap
        ("prompt 0", "prompt 1"),
        ("prompt 1", "final prompt"),  # t turn 1 truncated: bootstrap from the final observation
    ]
    batch = make_batch(FakePolicy(), samples)
    assert batch.rewards.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert batch.terminated.tolist() == [False, True, False, False]
    assert batch.truncated.tolist() == [False, False, False, True]
    assert batch.has_next.tolist() == [True, False, True, True]
    assert batch.next_index.tolist() == [0, -1, 1, 2]
    assert batch.next_inputs is not None
    assert batch.next_inputs["prompts"] == ["prompt 1", "prompt 1", "final prompt"]
    assert batch.inputs["response_mask"][0].tolist() == [False, False, False, True, True, True]


def test_offline_stream_is_memory_bounded_and_resumable(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", [_episode(f"e{i}", 3) for i in range(40)], shard_episodes=5)
    loads = []
    orig = store.read_shard

    def counting(shard, columns=None):  # type: ignore[no-untyped-def]
        rows = orig(shard, columns)
        loads.append(len(rows))
        return rows

    store.read_shard = counting  # type: ignore[method-assign]
    stream = OfflineStream(store, seed=3)
    first = [s.where for s in stream.take(7)]
    state = stream.state_dict()
    rest = [s.where for s in stream.take(200)]
    assert max(loads) == 15  # never more than one shard of 5 episodes x 3 turns in memory
    assert len(set(first + rest[:113])) == 120  # one epoch visits every turn exactly once
    again = OfflineStream(store, seed=3)
    again.load_state_dict(state)
    assert [s.where for s in again.take(200)] == rest


def test_replay_keeps_offline_and_evicts_online_fifo(tmp_path: Path) -> None:
    offline = write_dataset(tmp_path / "off", [_episode(f"off{i}", 1, source="expert") for i in range(4)])
    replay = ReplayStore(tmp_path / "on", offline, capacity=3, online_fraction=0.5, seed=0)
    rng = np.random.default_rng(0)
    assert len(replay.sample(4, rng)) == 4  # no online data yet: all offline
    for r in range(3):
        replay.add([_episode(f"r{r}e{i}", 1, source=f"online:{r}") for i in range(2)])
    assert replay.num_online_episodes == 3
    online_prompts = {s.where.split(" episode ")[1].split(" ")[0] for s in replay.online_samples()}
    assert online_prompts == {"r1e1", "r2e0", "r2e1"}  # newest three
    batch = replay.sample(10, rng)
    sources = [s.where.split(" episode ")[1][:3] for s in batch]
    assert sum(x.startswith("off") for x in sources) == 5  # offline data stays in the mix
    state = replay.state_dict()
    replay.add([_episode("late", 1)])
    replay.load_state_dict(state)  # resume rolls back episodes collected after the checkpoint
    assert "late" not in {s.where for s in replay.online_samples()}


def test_mixtures(tmp_path: Path) -> None:
    write_dataset(tmp_path / "exp", [_episode(f"x{i}", 1, source="expert") for i in range(10)])
    write_dataset(tmp_path / "rnd", [_episode(f"r{i}", 1, source="random") for i in range(10)])
    merged = merge(tmp_path / "all", [tmp_path / "exp", tmp_path / "rnd"])
    assert merged.stats()["sources"] == {"expert": 10, "random": 10}
    only = filter_episodes(tmp_path / "all", tmp_path / "only", source="exp")
    assert only.num_episodes == 10
    mix = sample_mixture(tmp_path / "mix", [(tmp_path / "exp", 0.2), (tmp_path / "rnd", 0.8)], total=10)
    assert mix.stats()["sources"] == {"expert": 2, "random": 8}
    with pytest.raises(ValueError, match="sum to 1"):
        sample_mixture(tmp_path / "bad", [(tmp_path / "exp", 0.5)], total=4)


def test_collect_gym_cards_expert(tmp_path: Path) -> None:
    stats = collect("gym_cards/NumberLine", "expert", 6, num_envs=2, asynchronous=False, out=tmp_path / "ds")
    assert stats.metrics()["success_rate"] == 1.0
    store = EpisodeStore(tmp_path / "ds")
    eps = list(store.iter_episodes())
    assert sorted(e.seed for e in eps) == list(range(6))
    assert all(e.turns[0].response.startswith('{"action"') for e in eps)
    assert all(e.turns[-1].terminated for e in eps)


def test_cli_collect_and_info(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ds"
    r = runner.invoke(
        app, ["collect", "gym_cards/Blackjack", "--policy", "noisy", "-n", "5", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "success" in r.output
    r = runner.invoke(app, ["data", "info", str(out), "--hist", str(tmp_path / "h.png")])
    assert r.exit_code == 0, r.output
    assert "noisy:0.2" in r.output and (tmp_path / "h.png").stat().st_size > 0
    from vlmq.models.tiny import save_tiny

    base = save_tiny("idefics3", tmp_path / "tiny")
    r = runner.invoke(app, ["data", "info", str(out), "--tokenizer", str(base)])
    assert r.exit_code == 0, r.output
    assert "response_tokens" in r.output
    r = runner.invoke(app, ["data", "info", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "no such dataset folder" in r.output
