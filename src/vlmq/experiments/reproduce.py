"""The paper's comparison on a CPU: prompting vs SFT vs AFSFT, offline and offline-then-online.

For every task, :func:`reproduce` builds two fixed datasets (``random``: uniform valid actions;
``noisy``: the scripted expert with ``epsilon`` random actions), then, for every seed, runs

==================  =============================================================================
``prompting``       the base model, untrained, evaluated (greedy)
``sft-random``      plain SFT (filter ``none``, no critic loss) on the random dataset
``afsft-random``    filter ``binary`` on the random dataset: the evaluation at the end of the
                    offline phase of the ``afsft-online`` run (the same run up to that step)
``afsft-online``    the same run continued online: ``online_rounds`` rounds of collecting
                    ``online_episodes`` episodes with the current policy, then ``online_steps`` steps
``sft-noisy``       plain SFT on the noisy-expert dataset
``afsft-noisy``     filter ``binary`` on the noisy-expert dataset
==================  =============================================================================

and the scripted ``expert`` on the same evaluation episodes (the ceiling). Evaluation is greedy, on
seeds no dataset or online round uses. Everything lands under ``out``: datasets in ``data/``, one
run folder per (task, condition, seed) in ``runs/``, and ``results.json`` / ``results.md`` (success
rate, return and valid-action rate, mean and spread over seeds) plus ``curves/<task>.png``
(AFSFT vs SFT learning curves). Finished runs are skipped and interrupted ones resumed, so running
the same command again continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vlmq.algo.afsft import AFSFTConfig
from vlmq.data.schema import DataError
from vlmq.data.store import EpisodeStore
from vlmq.envs.registry import spec
from vlmq.models.policy import Policy
from vlmq.rollout import collect
from vlmq.train.checkpoint import latest_checkpoint
from vlmq.train.config import TrainConfig
from vlmq.train.evaluate import evaluate_policy
from vlmq.train.learner import train
from vlmq.train.plot import plot_runs
from vlmq.utils.io import atomic_write_json, atomic_write_text

DEFAULT_TASKS = (
    "gym_cards/NumberLine",
    "gym_cards/EZPoints",
    "gym_cards/Blackjack",
    "gym_cards/Points24",
    "babyai/GoToRedBall",
    "babyai/GoToObj",
    "miniwob/click-test",
    "miniwob/click-button",
    "miniwob/click-link",
)
CONDITIONS = ("prompting", "sft-random", "afsft-random", "afsft-online", "sft-noisy", "afsft-noisy")
# training runs: name -> (dataset, filter, online)
RUNS: dict[str, tuple[str, str, bool]] = {
    "sft-random": ("random", "none", False),
    "afsft-online": ("random", "binary", True),
    "sft-noisy": ("noisy", "none", False),
    "afsft-noisy": ("noisy", "binary", False),
}
METRICS = ("success_rate", "mean_return", "valid_rate")
EVAL_SEED = 900_000_000  # + 10_000 * seed: evaluation episodes, far from dataset and online seeds
DATA_SEED = {"random": 0, "noisy": 500_000}


@dataclass
class ReproduceConfig:
    """What :func:`reproduce` runs. The defaults are the full CPU run of ``docs/results.md``."""

    out: str = "runs/reproduce"
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    model: str = "tiny"
    episodes: int = 300
    """Episodes per dataset (random and noisy)."""
    epsilon: float = 0.5
    """Random-action rate of the noisy expert."""
    steps: int = 300
    """Offline optimizer steps."""
    batch_size: int = 8
    lr: float = 1e-3
    eval_every: int = 150
    eval_episodes: int = 30
    online_rounds: int = 3
    online_episodes: int = 32
    online_steps: int = 50
    num_envs: int = 4
    max_new_tokens: int = 16

    @classmethod
    def quick(cls, **overrides: Any) -> ReproduceConfig:
        """Minutes on a CPU: one task per domain, one seed, a handful of episodes and steps (checks
        that the pipeline produces its table, not what the numbers are)."""
        base = dict(
            tasks=["gym_cards/NumberLine", "babyai/GoToRedBall", "miniwob/click-button"],
            seeds=[0], episodes=6, steps=4, eval_every=2, eval_episodes=2,
            online_rounds=1, online_episodes=2, online_steps=2, num_envs=2, max_new_tokens=8,
        )  # fmt: skip
        return cls(**{**base, **overrides})  # type: ignore[arg-type]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- datasets
def dataset(cfg: ReproduceConfig, task: str, kind: str) -> Path:
    """The ``random`` or ``noisy`` dataset of ``task`` (collected once; a partial one is redone)."""
    path = Path(cfg.out) / "data" / task.replace("/", "-") / kind
    done = path / "complete.json"
    if done.is_file():
        return path
    try:
        n = EpisodeStore(path).num_episodes if path.exists() else 0
    except DataError:
        n = 0
    if n < cfg.episodes:
        shutil.rmtree(path, ignore_errors=True)
        policy = "random" if kind == "random" else "noisy"
        _log(f"{task}: collecting {cfg.episodes} {kind} episodes")
        stats = collect(task, policy, cfg.episodes, num_envs=cfg.num_envs, seed=DATA_SEED[kind],
                        epsilon=cfg.epsilon, out=path, show_progress=False)  # fmt: skip
        atomic_write_json(done, {"task": task, "kind": kind, **stats.metrics()})
    return path


def data_quality(path: Path) -> dict[str, float]:
    """Success rate, return and valid-action rate of a dataset's episodes."""
    s = EpisodeStore(path).stats()
    return {k: float(s[k]) for k in METRICS}


# ----------------------------------------------------------------------------- evaluations
def _eval_seed(seed: int) -> int:
    return EVAL_SEED + 10_000 * seed


def expert_ceiling(cfg: ReproduceConfig, task: str, seed: int) -> dict[str, float]:
    """The scripted expert on the evaluation episodes of ``seed``."""
    stats = collect(task, "expert", cfg.eval_episodes, num_envs=cfg.num_envs, seed=_eval_seed(seed),
                    show_progress=False)  # fmt: skip
    return {k: stats.metrics()[k] for k in METRICS}


def prompting(cfg: ReproduceConfig, task: str, seed: int, policy_cache: dict[str, Any]) -> dict[str, float]:
    """The untrained base model on the evaluation episodes of ``seed``."""
    if cfg.model not in policy_cache:
        policy_cache[cfg.model] = Policy.from_pretrained(cfg.model, max_new_tokens=cfg.max_new_tokens)
    stats = evaluate_policy(policy_cache[cfg.model], task, episodes=cfg.eval_episodes, temperature=0.0,
                            num_envs=cfg.num_envs, seed=_eval_seed(seed),
                            max_new_tokens=cfg.max_new_tokens, show_progress=False)  # fmt: skip
    return {k: stats.metrics()[k] for k in METRICS}


# ----------------------------------------------------------------------------- training runs
def train_config(cfg: ReproduceConfig, task: str, name: str, seed: int, data: Path) -> Any:
    """The :class:`TrainConfig` of one training run of the comparison."""
    _, filt, online = RUNS[name]
    return TrainConfig(
        env=task, model=cfg.model, out=str(run_dir(cfg, task, name, seed)), data=str(data), seed=seed,
        loss=AFSFTConfig.for_filter(filt),  # type: ignore[arg-type]
        lr=cfg.lr, batch_size=cfg.batch_size, steps=cfg.steps, max_new_tokens=cfg.max_new_tokens,
        eval_every=cfg.eval_every, eval_episodes=cfg.eval_episodes, eval_sampled=False,
        eval_at_start=False, eval_seed=_eval_seed(seed), checkpoint_every=max(cfg.eval_every, 1),
        online=online, online_rounds=cfg.online_rounds, online_episodes=cfg.online_episodes,
        online_steps=cfg.online_steps, num_envs=cfg.num_envs,
    )  # fmt: skip


def run_dir(cfg: ReproduceConfig, task: str, name: str, seed: int) -> Path:
    return Path(cfg.out) / "runs" / task.replace("/", "-") / f"{name}-seed{seed}"


def train_run(cfg: ReproduceConfig, task: str, name: str, seed: int, data: Path) -> dict[str, Any]:
    """Train (or resume, or skip when finished) one run; returns its ``summary.json``."""
    out = run_dir(cfg, task, name, seed)
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    resume = latest_checkpoint(out) is not None
    if not resume and out.exists():
        shutil.rmtree(out)  # a run killed before its first checkpoint starts over
    _log(f"{task}: {'resuming' if resume else 'training'} {name} seed {seed}")
    return train(train_config(cfg, task, name, seed, data), resume=resume, show_progress=False)


def _eval_at(summary: dict[str, Any], step: int) -> dict[str, float]:
    for e in summary["evals"]:
        if e["step"] == step:
            return {k: e[f"greedy/{k}"] for k in METRICS}
    raise KeyError(f"no evaluation at step {step} in {summary.get('env')}")


# ----------------------------------------------------------------------------- the whole comparison
def run_seed(cfg: ReproduceConfig, task: str, seed: int, policy_cache: dict[str, Any]) -> None:
    """Everything of one seed on one task: expert and prompting evaluations, then the training runs
    (finished ones are skipped, interrupted ones resumed). The datasets must exist (:func:`dataset`)."""
    for name in ("expert", "prompting"):
        path = run_dir(cfg, task, name, seed).with_suffix(".json")
        if not path.is_file():
            _log(f"{task}: evaluating {name} seed {seed}")
            if name == "expert":
                atomic_write_json(path, expert_ceiling(cfg, task, seed))
            else:
                atomic_write_json(path, prompting(cfg, task, seed, policy_cache))
    for name, (kind, _, _) in RUNS.items():
        train_run(cfg, task, name, seed, dataset(cfg, task, kind))


def _seed_worker(cfg: ReproduceConfig, task: str, seed: int, threads: int) -> None:
    """:func:`run_seed` in a worker process of ``reproduce(jobs > 1)``."""
    torch.set_num_threads(threads)
    run_seed(cfg, task, seed, {})


def reproduce(cfg: ReproduceConfig, progress: Callable[[str], None] = _log, jobs: int = 1) -> dict[str, Any]:
    """Run (or continue) the comparison; writes and returns ``results.json`` (see module docstring).

    ``jobs > 1`` runs that many (task, seed) units at once in worker processes, each with its share of
    the CPU cores as torch threads, slow domains (environments in subprocess workers, e.g. MiniWoB++)
    first so that the workers finish together; the datasets are collected first, one at a time. A
    unit that fails stops the queue (the running ones finish) and re-raises; run again to continue.
    """
    if cfg.steps % max(cfg.eval_every, 1):
        raise ValueError("steps must be a multiple of eval_every (the offline AFSFT result is read there)")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, not {jobs}")
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "config.json", dataclasses.asdict(cfg))
    t0 = time.time()
    results: dict[str, Any] = {"config": dataclasses.asdict(cfg), "tasks": {}}

    def finish(task: str) -> None:
        results["tasks"][task] = task_result(cfg, task, cfg.seeds)
        progress(f"{task}: done")
        write_results(root, results, time.time() - t0)

    for task in cfg.tasks:
        for kind in ("random", "noisy"):
            dataset(cfg, task, kind)
    if jobs == 1:
        cache: dict[str, Any] = {}
        for task in cfg.tasks:
            for seed in cfg.seeds:
                run_seed(cfg, task, seed, cache)
            finish(task)
        return results
    _run_parallel(cfg, jobs, progress)
    for task in cfg.tasks:
        finish(task)
    return results


def _run_parallel(cfg: ReproduceConfig, jobs: int, progress: Callable[[str], None]) -> None:
    units = [(task, seed) for task in cfg.tasks for seed in cfg.seeds]
    units.sort(key=lambda u: not spec(u[0]).workers)  # stable: slow domains first, else config order
    threads = max(1, (os.cpu_count() or 1) // jobs)
    progress(f"{len(units)} (task, seed) units on {jobs} workers, {threads} torch thread(s) each")
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_seed_worker, cfg, task, seed, threads): (task, seed) for task, seed in units}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                fut.result()  # re-raises a worker's error
                task, seed = futures[fut]
                progress(f"{task} seed {seed}: done ({len(futures) - len(pending)}/{len(futures)})")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def seed_finished(cfg: ReproduceConfig, task: str, seed: int) -> bool:
    """Every evaluation and training run of ``seed`` on ``task`` is finished."""
    evals = [run_dir(cfg, task, n, seed).with_suffix(".json") for n in ("expert", "prompting")]
    runs = [run_dir(cfg, task, n, seed) / "summary.json" for n in RUNS]
    return all(p.is_file() for p in (*evals, *runs))


def task_result(cfg: ReproduceConfig, task: str, seeds: list[int]) -> dict[str, Any]:
    """One task's entry of ``results.json`` from its finished ``seeds`` (and its curves)."""
    per_seed: dict[str, list[dict[str, float]]] = {c: [] for c in ("expert", *CONDITIONS)}
    wall = 0.0
    for seed in seeds:
        for name in ("expert", "prompting"):
            per_seed[name].append(json.loads(run_dir(cfg, task, name, seed).with_suffix(".json").read_text()))
        for name in RUNS:
            summary = json.loads((run_dir(cfg, task, name, seed) / "summary.json").read_text())
            if name == "afsft-online":
                per_seed["afsft-random"].append(_eval_at(summary, cfg.steps))
            per_seed[name].append(_eval_at(summary, summary["steps"]))
            wall += summary["wall_time_s"]
    data_dir = Path(cfg.out) / "data" / task.replace("/", "-")
    curves(cfg, task, seeds)
    return {
        "seeds": list(seeds),
        "data": {kind: data_quality(data_dir / kind) for kind in ("random", "noisy")},
        "conditions": {c: aggregate(v) for c, v in per_seed.items()},
        "per_seed": per_seed,
        "train_wall_time_s": round(wall, 1),
    }


def report(cfg: ReproduceConfig) -> dict[str, Any]:
    """Write ``results.json`` / ``results.md`` from what is finished, training nothing: every task
    with at least one finished seed, over its finished seeds (the table says how many). With no
    finished seed at all it writes nothing (and creates no folder); ``results["tasks"]`` is empty."""
    t0 = time.time()
    results: dict[str, Any] = {"config": dataclasses.asdict(cfg), "tasks": {}}
    for task in cfg.tasks:
        seeds = [s for s in cfg.seeds if seed_finished(cfg, task, s)]
        if seeds:
            results["tasks"][task] = task_result(cfg, task, seeds)
    if results["tasks"]:
        write_results(Path(cfg.out), results, time.time() - t0)
    return results


def aggregate(values: list[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation over seeds of each metric."""
    out: dict[str, float] = {"seeds": float(len(values))}
    for k in METRICS:
        xs = [v[k] for v in values]
        out[k] = statistics.fmean(xs)
        out[f"{k}_std"] = statistics.pstdev(xs) if len(xs) > 1 else 0.0
    return out


def curves(cfg: ReproduceConfig, task: str, seeds: list[int]) -> Path:
    """AFSFT vs SFT learning curves of ``task`` (the given seeds) in ``curves/<task>.png``."""
    runs = [run_dir(cfg, task, name, seed) for name in RUNS for seed in seeds]
    labels = [f"{name} s{seed}" for name in RUNS for seed in seeds]
    groups = [name for name in RUNS for _ in seeds]
    metrics = ("eval/greedy/success_rate", "eval/greedy/valid_rate", "train/filter_pass_frac")
    out = Path(cfg.out) / "curves" / f"{task.replace('/', '-')}.png"
    return plot_runs(runs, out, metrics=metrics, labels=labels, groups=groups)


def format_table(results: dict[str, Any]) -> str:
    """The Markdown tables: success rate (%) mean ± std over seeds per task and condition, with the
    valid-action rate and the datasets' own success rates; then the mean return likewise."""
    success = _table(
        results,
        f"Success rate (%), greedy, {results['config']['eval_episodes']} evaluation episodes per seed, "
        "mean ± std over seeds; in brackets: valid-action rate (%).",
        lambda m: f"{100 * m['success_rate']:.0f}",
        lambda m: (
            f"{100 * m['success_rate']:.0f} ± {100 * m['success_rate_std']:.0f} ({100 * m['valid_rate']:.0f})"
        ),
    )
    returns = _table(
        results,
        "Mean episode return, the same episodes, mean ± std over seeds.",
        lambda m: f"{m['mean_return']:.2f}",
        lambda m: f"{m['mean_return']:.2f} ± {m['mean_return_std']:.2f}",
    )
    return "\n".join([*success, "", *returns]) + "\n"


def _table(
    results: dict[str, Any],
    title: str,
    data_cell: Callable[[dict[str, float]], str],
    cell: Callable[[dict[str, float]], str],
) -> list[str]:
    """One Markdown table: a row per finished task (in the configured order) with its number of seeds,
    ``data_cell`` of the random and noisy datasets, and ``cell`` of every condition."""
    cols = ("expert", *CONDITIONS)
    lines = [
        title,
        "",
        "| task | seeds | data random / noisy | " + " | ".join(cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    for task in (t for t in results["config"]["tasks"] if t in results["tasks"]):
        r = results["tasks"][task]
        cells = [str(len(r["seeds"])), f"{data_cell(r['data']['random'])} / {data_cell(r['data']['noisy'])}"]
        cells += [cell(r["conditions"][c]) for c in cols]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def write_results(root: Path, results: dict[str, Any], wall_s: float) -> None:
    results["wall_time_s"] = round(wall_s, 1)
    atomic_write_json(root / "results.json", results)
    atomic_write_text(root / "results.md", format_table(results))
