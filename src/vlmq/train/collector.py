"""Asynchronous online collection: collectors that overlap the learner (``online_mode="async"``).

A collector is a process that follows one run folder. It loads the newest checkpoint of the run (the
learner's *published* weights; the learner checkpoints every ``online_steps`` steps of its online
phase), collects ``online_episodes`` episodes with it, appends them to the run's replay store
(``RUN/replay``, one shard per round, several writers at once are safe), records the round in
``RUN/collectors/<id>.jsonl`` and starts over, until the learner has finished (``summary.json``).
The learner meanwhile trains without pause on whatever the replay holds, so the episodes of a batch
come from policies up to a few publications old (the ``policy lag`` it logs).

The learner starts ``collectors`` of them on its own machine (``vlmq train --online-mode async``);
more can join at any time with ``vlmq collect-online RUN --id K``, also on other machines that mount
the run folder (a shared file system: the store's appends are atomic hard links, the checkpoints are
renamed into place). Only files connect the two sides, so a collector can crash, restart or be added
without the learner noticing more than a pause in new data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vlmq.models.policy import Policy
from vlmq.rollout import collect
from vlmq.train.checkpoint import checkpoint_step, latest_checkpoint
from vlmq.train.config import TrainConfig
from vlmq.utils.device import resolve_device
from vlmq.utils.io import read_jsonl

LOG_DIR = "collectors"
SEED_STRIDE = 20_000_000
"""Collector ``k`` resets its episodes from seed ``cfg.seed * 1_000_003 + (k + 1) * SEED_STRIDE``
on: away from the synchronous rounds' seeds, evaluation seeds and the other collectors."""


def finished(run_dir: Path) -> bool:
    """The learner has written its summary: collectors stop."""
    return (run_dir / "summary.json").is_file()


def read_rounds(path: Path) -> list[dict[str, Any]]:
    """The records of a collector log (a line cut by a kill is skipped)."""
    return read_jsonl(path)


def run_collector(
    run_dir: str | Path,
    collector_id: int = 0,
    device: str = "auto",
    max_rounds: int | None = None,
    poll_s: float = 0.5,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> int:
    """Follow ``run_dir`` (see module docstring) until the learner finishes or ``max_rounds`` rounds
    are collected; returns the rounds collected. A restarted collector continues its round count (and
    so its episode seeds) from its log."""
    run = Path(run_dir)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run}: not a vlmq run folder (no config.json)")
    cfg = TrainConfig.load(run / "config.json")
    if not cfg.online:
        raise ValueError(f"{run}: the run has no online phase (trained without --online)")
    log_path = run / LOG_DIR / f"{collector_id}.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    round_idx = len(read_rounds(log_path))
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed * 1_000_003 + collector_id)
    policy: Any = None
    loaded: Path | None = None
    done = 0
    while not finished(run) and (max_rounds is None or done < max_rounds):
        ckpt = latest_checkpoint(run)
        if ckpt is None or checkpoint_step(ckpt) < cfg.steps:  # offline phase still running
            time.sleep(poll_s)
            continue
        if ckpt != loaded:
            try:
                if policy is None:
                    policy = Policy.from_pretrained(ckpt / "policy", max_new_tokens=cfg.max_new_tokens)
                    policy.to(dev).eval()
                else:
                    policy.load_weights(ckpt / "policy")
            except (FileNotFoundError, OSError) as e:  # pruned while we read it: take the next one
                log(f"collector {collector_id}: {ckpt.name} vanished while loading ({e}); retrying")
                time.sleep(poll_s)
                continue
            loaded = ckpt
        t0 = time.time()
        stats = collect(
            cfg.env,
            "model",
            cfg.online_episodes,
            model=policy,
            num_envs=cfg.num_envs,
            seed=cfg.seed * 1_000_003 + (collector_id + 1) * SEED_STRIDE + round_idx * cfg.online_episodes,
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            cot=cfg.cot,
            out=run / "replay",
            shard_episodes=cfg.online_episodes + 1,  # one shard per round
            source=f"online:c{collector_id}:{round_idx}",
            show_progress=False,
        )
        record = {
            "round": round_idx,
            "policy_step": checkpoint_step(loaded),
            "time": time.time(),
            "wall_s": round(time.time() - t0, 3),
            **stats.metrics(),
        }
        with open(log_path, "a") as f:  # one short line per round; a cut line is skipped on read
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        log(f"collector {collector_id}: round {round_idx} with weights of step {record['policy_step']}: "
            f"{stats.summary()}")  # fmt: skip
        round_idx += 1
        done += 1
    return done


def start_collectors(run_dir: Path, count: int, device: str) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` collector processes (``python -m vlmq collect-online``) for a run on this
    machine; each writes its output to ``RUN/collectors/<id>.log``."""
    procs = []
    (run_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    for k in range(count):
        with open(run_dir / LOG_DIR / f"{k}.log", "ab") as out:
            cmd = [sys.executable, "-m", "vlmq", "collect-online", str(run_dir), "--id", str(k)]
            procs.append(subprocess.Popen([*cmd, "--device", device], stdout=out, stderr=subprocess.STDOUT))
    return procs


def stop_collectors(procs: list[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """Terminate local collectors (a round cut short loses only its unwritten episodes)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class CollectorLogs:
    """The learner's view of its collectors' logs: the rounds recorded since the last call."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / LOG_DIR
        self.seen: dict[str, int] = {}

    def new_rounds(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.dir.glob("*.jsonl")) if self.dir.is_dir() else []:
            rounds = read_rounds(path)
            out += rounds[self.seen.get(path.name, 0) :]
            self.seen[path.name] = len(rounds)
        return out

    @staticmethod
    def summarize(rounds: list[dict[str, Any]], step: int) -> dict[str, float]:
        """Episode-weighted success, return and valid rate of ``rounds``, and the policy lag (learner
        step minus the step of the weights that collected them)."""
        if not rounds:
            return {}
        eps = sum(r["episodes"] for r in rounds)
        steps = sum(r["episodes"] * r["mean_length"] for r in rounds)
        return {
            "episodes": float(eps),
            "success_rate": sum(r["success_rate"] * r["episodes"] for r in rounds) / eps,
            "mean_return": sum(r["mean_return"] * r["episodes"] for r in rounds) / eps,
            "valid_rate": sum(r["valid_rate"] * r["episodes"] * r["mean_length"] for r in rounds)
            / max(steps, 1.0),
            "policy_lag": sum(step - r["policy_step"] for r in rounds) / len(rounds),
            "rounds": float(len(rounds)),
        }
