"""Data-parallel training: 2 CPU processes (DDP with gloo, started by ``accelerate launch``) on a tiny model
take the same steps as 1 process with the same global batch, stay identical, and resume."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from vlmq.algo.afsft import AFSFTConfig
from vlmq.data.store import EpisodeStore
from vlmq.train.config import TrainConfig
from vlmq.train.logger import read_metrics

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from vlmq.train.config import TrainConfig
    from vlmq.train.learner import Learner

    def weights(learner):
        named = learner.policy.named_parameters()
        return {n: p.detach().clone() for n, p in named if p.requires_grad or n.startswith("target_head.")}

    if __name__ == "__main__":
        cfg, out = TrainConfig.from_dict(json.loads(sys.argv[1])), Path(sys.argv[2])
        learner = Learner(cfg, resume=len(sys.argv) > 3, show_progress=False)
        rank = learner.accelerator.process_index
        torch.save(weights(learner), out / f"start-{rank}.pt")
        learner.run()
        torch.save(weights(learner), out / f"end-{rank}.pt")
    """
)
Weights = dict[str, torch.Tensor]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cfg(base: Path, data: Path, out: Path, batch_size: int) -> TrainConfig:
    """2 offline steps, then 1 online round (collect 2 episodes, 2 steps), 2 micro-batches per step; a
    checkpoint every 2 steps.

    No exact ties, which make rounding visible: the critic starts constant, so every advantage is 0 up
    to rounding (the exponential filter is smooth there, the binary one flips), and with
    ``gamma_token=1`` so is the TD error within a turn; Adam turns such rounding-noise gradients into
    full-size steps of arbitrary sign."""
    return TrainConfig(
        env="gym_cards/NumberLine", model=str(base), data=str(data), out=str(out), seed=3,
        loss=AFSFTConfig(filter="exp", gamma_token=0.95), batch_size=batch_size, grad_accum=2, steps=2,
        online=True, online_rounds=1, online_episodes=2, online_steps=2, num_envs=2, lr=1e-3,
        warmup_steps=1, log_every=1, eval_every=0, eval_episodes=0, checkpoint_every=2, device="cpu",
    )  # fmt: skip


def _launch(
    tmp: Path, cfg: TrainConfig, name: str, processes: int, resume: bool = False
) -> dict[str, list[Weights]]:
    """Run ``cfg`` on ``processes`` processes; returns each process's weights at the start and the end."""
    script, out = tmp / "worker.py", tmp / name
    script.write_text(WORKER)
    out.mkdir()
    args = [str(script), json.dumps(cfg.to_dict()), str(out), *(["--resume"] if resume else [])]
    # HF_HOME: no accelerate config of the machine's user applies
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "HF_HOME": str(tmp / "hf")}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
              str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port())]  # fmt: skip
    cmd = [*launch, *args] if processes > 1 else [sys.executable, *args]
    subprocess.run(cmd, check=True, env=env, timeout=300)
    return {
        stage: [torch.load(out / f"{stage}-{r}.pt") for r in range(processes)] for stage in ("start", "end")
    }


def _train_records(run: Path) -> list[dict[str, float]]:
    return [r for r in read_metrics(run) if "train/loss" in r]


def _online_responses(run: Path) -> list[str]:
    return [r["response"] for r in EpisodeStore(run / "replay").iter_turns(["response"])]


def _assert_identical(a: Weights, b: Weights) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@dataclass
class Run:
    cfg: TrainConfig
    weights: dict[str, list[Weights]]  # "start" / "end" -> one state per process

    @property
    def dir(self) -> Path:
        return Path(self.cfg.out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, random_data: Path) -> dict[int, Run]:
    """The same global batch (2 micro-batches of 4 turns) on 1 process and on 2 processes (2 turns each)."""
    tmp = tmp_path_factory.mktemp("ddp")
    out: dict[int, Run] = {}
    for processes in (1, 2):
        cfg = _cfg(tiny_base, random_data, tmp / f"run-{processes}", batch_size=4 // processes)
        out[processes] = Run(cfg, _launch(tmp, cfg, f"weights-{processes}", processes))
    return out


@pytest.mark.slow
def test_two_processes_take_the_steps_of_one(runs: dict[int, Run]) -> None:
    one, two = runs[1], runs[2]
    for stage in ("start", "end"):  # DDP keeps the processes in lockstep
        _assert_identical(two.weights[stage][0], two.weights[stage][1])
    _assert_identical(one.weights["start"][0], two.weights["start"][0])
    # Each process weights its token-mean loss by its share of the micro-batch's tokens, so both runs
    # compute the same gradients in another summation order (and padding): they differ by float32
    # rounding, ~1e-7 relative per step, grown by Adam's normalisation over 4 steps to ~1e-5 of how far
    # training moved each tensor; a thousandth leaves room for that and still fails if the processes
    # see other data or weight their losses per process (that gap is a few percent here)
    start, end_one, end_two = one.weights["start"][0], one.weights["end"][0], two.weights["end"][0]
    for k in start:
        moved = (end_one[k] - start[k]).norm()
        assert moved > 0, k
        assert (end_two[k] - end_one[k]).norm() <= 1e-3 * moved, k
    # the main process alone logs: one record per step, with the metrics of the whole global batch
    m_one, m_two = _train_records(one.dir), _train_records(two.dir)
    assert [r["step"] for r in m_two] == [r["step"] for r in m_one] == [1, 2, 3, 4]
    for a, b in zip(m_one, m_two, strict=True):
        assert b["train/tokens"] == a["train/tokens"]
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-4)
    assert json.loads((two.dir / "summary.json").read_text())["processes"] == 2
    # the online round: collected once, by the main process, with (up to rounding) the same policy
    assert _online_responses(one.dir) and _online_responses(two.dir) == _online_responses(one.dir)


@pytest.mark.slow
def test_two_processes_resume_where_they_stopped(runs: dict[int, Run], tmp_path: Path) -> None:
    two = runs[2]
    cfg = dataclasses.replace(two.cfg, out=str(tmp_path / "killed"))
    shutil.copytree(two.dir, cfg.out)  # as if killed after step 2's checkpoint, before the online round
    cfg.save(Path(cfg.out, "config.json"))
    shutil.rmtree(Path(cfg.out, "checkpoint-000004"))
    Path(cfg.out, "latest").write_text("checkpoint-000002\n")
    resumed = _launch(tmp_path, cfg, "weights", 2, resume=True)
    for stage in ("start", "end"):  # every process loaded the same checkpoint and stayed in lockstep
        _assert_identical(resumed[stage][0], resumed[stage][1])
    for k, v in two.weights["end"][0].items():
        torch.testing.assert_close(resumed["end"][0][k], v, rtol=1e-5, atol=1e-6, msg=k)
    # the online round was rolled back and collected again, as in the uninterrupted run
    assert _online_responses(Path(cfg.out)) == _online_responses(two.dir)
    m_resumed, m_two = _train_records(Path(cfg.out)), _train_records(two.dir)
    assert [r["step"] for r in m_resumed] == [r["step"] for r in m_two]
    for a, b in zip(m_two, m_resumed, strict=True):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
