"""Asynchronous online collection: collectors follow the learner's published weights and feed its
replay while it trains (started by the learner, or by hand with `vlmq collect-online`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.data.store import EpisodeStore
from vlmq.train.collector import read_rounds
from vlmq.train.config import TrainConfig
from vlmq.train.learner import Learner
from vlmq.train.logger import read_metrics


def _cfg(base: Path, data: Path, out: Path, collectors: int) -> TrainConfig:
    return TrainConfig(
        env="gym_cards/NumberLine", model=str(base), data=str(data), out=str(out), steps=4, batch_size=4,
        lr=1e-3, eval_every=0, eval_episodes=0, checkpoint_every=100, online=True, online_mode="async",
        collectors=collectors, collector_device="cpu", online_rounds=3, online_steps=4,
        online_episodes=2, num_envs=2, max_new_tokens=8, seed=3,
    )  # fmt: skip


def _sources(run: Path) -> list[str]:
    return [rows[0]["source"] for rows in EpisodeStore(run / "replay").iter_episode_rows(["source"])]


def test_learner_starts_and_stops_its_collectors(tmp_path: Path, tiny_base: Path, random_data: Path) -> None:
    run = tmp_path / "run"
    learner = Learner(_cfg(tiny_base, random_data, run, collectors=1), show_progress=False)
    summary = learner.run()
    assert summary["steps"] == 16 and summary["online_mode"] == "async"
    assert learner.collector_procs and all(p.poll() is not None for p in learner.collector_procs)
    rounds = read_rounds(run / "collectors" / "0.jsonl")
    assert rounds and all(r["policy_step"] >= 4 and r["episodes"] == 2 for r in rounds)  # published weights
    sources = _sources(run)
    assert len(sources) >= 2 and all(s.startswith("online:c0:") for s in sources)
    online = [r for r in read_metrics(run) if "online/episodes" in r]
    assert online and all(r["online/policy_lag"] >= 0 for r in online)
    assert sum(r["online/episodes"] for r in online) == 2 * len(rounds)  # every round logged once


def test_a_collector_started_by_hand_feeds_a_waiting_learner(
    tmp_path: Path, tiny_base: Path, random_data: Path
) -> None:
    run = tmp_path / "run"
    learner = Learner(_cfg(tiny_base, random_data, run, collectors=0), show_progress=False)
    cmd = [sys.executable, "-m", "vlmq", "collect-online", str(run), "--id", "7", "--device", "cpu"]
    collector = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        learner.run()  # waits at the start of its online phase until episodes arrive
        out, _ = collector.communicate(timeout=120)  # it stops by itself when the run has finished
    finally:
        collector.kill()
    assert collector.returncode == 0, out
    assert "round(s) collected" in out
    assert _sources(run) and all(s.startswith("online:c7:") for s in _sources(run))
    assert json.loads((run / "summary.json").read_text())["steps"] == 16


def test_collect_online_errors(tmp_path: Path, tiny_base: Path, random_data: Path) -> None:
    r = CliRunner().invoke(app, ["collect-online", str(tmp_path)])
    assert r.exit_code == 1 and "not a vlmq run folder" in r.output
    cfg = _cfg(tiny_base, random_data, tmp_path / "offline", collectors=0)
    cfg.online = False
    cfg.save(tmp_path / "offline" / "config.json")
    r = CliRunner().invoke(app, ["collect-online", str(tmp_path / "offline")])
    assert r.exit_code == 1 and "no online phase" in r.output


def test_learner_stops_when_its_collectors_die(tmp_path: Path, tiny_base: Path, random_data: Path) -> None:
    from vlmq.train.learner import CollectorsFailed

    cfg = _cfg(tiny_base, random_data, tmp_path / "run", collectors=1)
    cfg.collector_device = "no-such-device"  # every collector fails at start
    with pytest.raises(CollectorsFailed, match=r"all 1 collectors exited .* before their first episodes"):
        Learner(cfg, show_progress=False).run()
    assert "no-such-device" in (tmp_path / "run" / "collectors" / "0.log").read_text()
