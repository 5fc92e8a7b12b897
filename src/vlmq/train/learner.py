"""The learner: offline AFSFT on a dataset, then (optionally) online rounds on the agent's own episodes.

``train(cfg)`` is the whole loop; ``train(cfg, resume=True)`` continues a killed run from its last
checkpoint and ends where the uninterrupted run would have ended (same batches, same RNG streams).
SFT, AFSFT and AWR are the same loop with a different ``cfg.loss.filter``.

Data-parallel training (DDP) runs the same loop in every process started by ``accelerate launch``
(in a plain single process the :class:`~accelerate.Accelerator` changes nothing). Every process draws
the same global micro-batch from the same seeded stream and trains on its own share of it; the
gradients are averaged across processes, so all of them hold the same weights. The main process alone
logs, evaluates, collects online episodes and writes checkpoints while the others wait at a barrier;
on resume every process loads the same checkpoint.

Online, ``cfg.online_mode`` chooses between synchronous rounds (collect with the current weights, then
train) and asynchronous collection (:mod:`vlmq.train.collector`: collector processes follow the
published checkpoints and append to the replay store while the learner trains; every process of the
learner moves its replay window to the shards the main process has seen, at every step).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import InitProcessGroupKwargs, broadcast_object_list, gather_object

from vlmq.algo.afsft import AFSFTConfig
from vlmq.data.batches import make_batch
from vlmq.data.lanes import LANE_SEGMENT, BackwardLanes
from vlmq.data.replay import ReplayStore
from vlmq.data.store import EpisodeStore
from vlmq.models.policy import Policy
from vlmq.rollout import collect
from vlmq.train.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint, set_rng_state
from vlmq.train.collector import CollectorLogs, start_collectors, stop_collectors
from vlmq.train.config import TrainConfig
from vlmq.train.evaluate import evaluate_policy
from vlmq.train.logger import RunLogger
from vlmq.train.objective import compute_loss
from vlmq.train.plot import plot_runs
from vlmq.train.ranking import blind_accuracy, build_probes, ranking_accuracy, ranking_verdict
from vlmq.utils.device import resolve_device
from vlmq.utils.io import atomic_write_json
from vlmq.utils.progress import progress_bar


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient: the run stops, its last good checkpoint stays."""


class CollectorsFailed(RuntimeError):
    """Every local collector process exited before delivering episodes (their logs say why)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def mean_return(cfg: TrainConfig) -> float:
    """The mean episode return of the offline data times the reward scale (0 without data)."""
    if not cfg.data:
        return 0.0

    return float(EpisodeStore(cfg.data).stats()["mean_return"]) * cfg.loss.reward_scale


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning-rate multiplier of step ``s``: linear warm-up over ``warmup_steps``, then constant
    (``lr_schedule="constant"``) or a cosine decay to ``lr_min_ratio * lr`` at ``total_steps``."""
    warm, total = max(1, cfg.warmup_steps), max(1, cfg.total_steps)

    def factor(s: int) -> float:
        up = min(1.0, (s + 1) / warm)
        if cfg.lr_schedule == "constant":
            return up
        frac = min(1.0, s / total)
        return up * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    return factor


# main-process-only evaluation and online collection may outlast the default collective timeout
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def make_accelerator(device: str) -> tuple[Accelerator, torch.device]:
    """The run's accelerator and device. One process: ``device`` as given. Several processes
    (``accelerate launch``): each uses the accelerator's device (its own GPU, or the CPU with gloo)."""
    wanted = resolve_device(device)
    acc = Accelerator(
        cpu=wanted.type == "cpu",
        device_placement=False,
        kwargs_handlers=[InitProcessGroupKwargs(timeout=COLLECTIVE_TIMEOUT)],
    )
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        raise ValueError(
            f"{acc.distributed_type} is not supported: evaluation, online collection and checkpoints use "
            "full weights in every process; use a DDP (multi-GPU or multi-CPU) accelerate config"
        )
    if acc.num_processes == 1:
        return acc, wanted
    if device not in ("auto", acc.device.type):
        raise ValueError(
            f"device {device!r}: with {acc.num_processes} processes each uses its own device "
            f"({acc.device} here); use auto, cpu or cuda"
        )
    return acc, acc.device


class TrainData:
    """The learner's data: offline dataset + online FIFO (a :class:`ReplayStore`) and the collector."""

    def __init__(
        self, cfg: TrainConfig, policy: Any, run_dir: Path, process_index: int = 0, num_processes: int = 1
    ) -> None:
        self.cfg = cfg
        self.policy = policy
        self.process_index = process_index
        self.num_processes = num_processes
        offline = EpisodeStore(cfg.data) if cfg.data else None
        self.replay = ReplayStore(
            run_dir / "replay",
            offline,
            cfg.replay_capacity,
            cfg.online_fraction,
            seed=cfg.seed,
            follow=cfg.online_mode == "sync",  # async: the learner moves the window (same in all processes)
            segment_turns=LANE_SEGMENT if cfg.uses_lanes and cfg.segment_turns == 1 else cfg.segment_turns,
        )
        self.rng = np.random.default_rng([cfg.seed, 1])
        self.lanes = (
            BackwardLanes(self.replay, cfg.batch_size * num_processes, self.rng) if cfg.uses_lanes else None
        )

    def next_batch(self) -> Any:
        """This process's ``batch_size`` turns of the next global micro-batch. Every process draws the
        same ``batch_size * num_processes`` turns (same seeded stream, so a checkpoint's data cursor is
        valid for all of them) and keeps every ``num_processes``-th, from its ``process_index`` on; with
        ``segment_turns > 1`` its own contiguous ``batch_size`` turns instead (segments stay together),
        and next states held by a row of the batch are read from the main pass (``link``); with
        backward lanes (``cfg.uses_lanes``) its own ``batch_size`` lanes (:mod:`vlmq.data.lanes`)."""
        bs, segments = self.cfg.batch_size, self.cfg.segment_turns > 1
        if self.lanes is not None:  # every process walks all lanes, and trains on its own
            turns, carried = self.lanes.next()
            mine = slice(self.process_index * bs, (self.process_index + 1) * bs)
            return make_batch(self.policy, turns[mine], next_values=carried[mine])
        samples = self.replay.sample(bs * self.num_processes, self.rng)
        if segments:
            mine = samples[self.process_index * bs : (self.process_index + 1) * bs]
        else:
            mine = samples[self.process_index :: self.num_processes]
        return make_batch(self.policy, mine, link=segments)

    def collect_online(self, round_idx: int) -> tuple[dict[str, float], list[str]]:
        """Collect one round of episodes with the current policy into the replay store; returns its
        statistics (success, return, valid-action rate, ...) and a few sample responses."""
        cfg = self.cfg
        was_training = self.policy.training
        self.policy.eval()
        try:
            stats = collect(
                cfg.env,
                "model",
                cfg.online_episodes,
                model=self.policy,
                num_envs=cfg.num_envs,
                seed=cfg.seed * 1_000_003 + 10_000 + round_idx * cfg.online_episodes,
                temperature=cfg.temperature,
                max_new_tokens=cfg.max_new_tokens,
                cot=cfg.cot,
                out=self.replay.online,
                shard_episodes=cfg.online_episodes + 1,  # one shard per round
                source=f"online:{round_idx}",
                show_progress=False,
            )
        finally:
            self.policy.train(was_training)
        self.replay.reload()
        metrics = {**stats.metrics(), "replay_online_episodes": float(self.replay.num_online_episodes)}
        return metrics, stats.samples[:5]

    def record_values(self, first_values: torch.Tensor | None) -> None:
        """Keep this process's rows' first-state values for the lanes' next batch (no-op without
        lanes)."""
        if self.lanes is not None and first_values is not None:
            values = [None if v != v else float(v) for v in first_values.detach().float().cpu().tolist()]
            self.lanes.record(values, self.process_index * self.cfg.batch_size)

    def state_dict(self) -> dict[str, Any]:
        state = {"replay": self.replay.state_dict(), "rng": self.rng.bit_generator.state}
        if self.lanes is not None:
            state["lanes"] = self.lanes.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # synchronous rounds are redone after a resume; asynchronous collectors' episodes are kept
        self.replay.load_state_dict(state["replay"], truncate=self.cfg.online_mode == "sync")
        self.rng.bit_generator.state = state["rng"]
        if self.lanes is not None and "lanes" in state:
            self.lanes.load_state_dict(state["lanes"])


class Learner:
    """Holds the policy, optimizer, data and logs of one run. Use :func:`train`."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, show_progress: bool = True) -> None:
        self.run_dir = Path(cfg.out)
        ckpt = latest_checkpoint(self.run_dir) if resume else None
        if resume:  # cfg: the saved config, with only fields that a resumed run may change changed
            if not (self.run_dir / "config.json").is_file():
                raise FileNotFoundError(f"{self.run_dir}: no config.json, not a vlmq run folder")
            if bad := TrainConfig.load(self.run_dir / "config.json").resume_conflicts(cfg):
                raise ValueError(f"{self.run_dir}: cannot resume with other {', '.join(bad)} than the run's")
        elif (self.run_dir / "config.json").exists() and latest_checkpoint(self.run_dir) is not None:
            raise FileExistsError(f"{self.run_dir} already holds a run; use --resume or another --out")
        self.cfg = cfg
        self.show_progress = show_progress
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.accelerator, self.device = make_accelerator(cfg.device)
        self.is_main = self.accelerator.is_main_process
        seed_everything(cfg.seed)

        source = str(ckpt / "policy") if ckpt else cfg.model
        self.critic_init_bias = cfg.critic_init_bias if cfg.critic_init_bias is not None else mean_return(cfg)
        self.policy = Policy.from_pretrained(
            source,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            max_new_tokens=cfg.max_new_tokens,
            critic_init_bias=self.critic_init_bias,
            critic_init_std=cfg.critic_init_std,
            seed=cfg.seed,
            dtype=cfg.dtype or ("bfloat16" if self.device.type == "cuda" else "float32"),
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
        if self.is_main:  # only once the model loaded: a bad --model leaves no run folder behind
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")
        self.policy.to(self.device)
        if ckpt is None:
            self.policy.update_target(1.0)
        params = list(self.policy.trainable_parameters())
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(cfg))
        self.use_bf16 = cfg.bf16 if cfg.bf16 is not None else self.device.type == "cuda"
        self.logger = RunLogger(self.run_dir, enabled=self.is_main)
        self.step = 0
        self.online_round = 0
        self.last_saved = -1
        self.collector_procs: list[Any] = []
        self.collector_logs: Any = None
        self.async_started = False
        self.history: list[dict[str, Any]] = []
        self.probes: list[Any] = []
        self.last_ranking: float | None = None
        if self.is_main and cfg.rank_every > 0:
            self.probes = build_probes(cfg.env, cfg.rank_states)
        state = load_trainer_state(ckpt) if ckpt is not None else None
        # the main process rolls the replay back to the checkpoint before the others read it
        with self.accelerator.main_process_first():
            self.data = self._make_data()
            if state is not None:
                self.data.load_state_dict(state["data"])
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = int(state["step"])
            self.last_saved = self.step
            self.online_round = int(state.get("online_round", 0))
            self.history = list(state.get("history", []))
            set_rng_state(state["rng"])
            self.logger.truncate(self.step)
        # `model` is the policy as the accelerator wraps it (DDP): training passes go through it.
        # The scheduler is not prepared: accelerate would step it once per process.
        self.model, self.optimizer = self.accelerator.prepare(self.policy, self.optimizer)

    # ------------------------------------------------------------------ data
    def _make_data(self) -> TrainData:
        acc = self.accelerator
        return TrainData(self.cfg, self.policy, self.run_dir, acc.process_index, acc.num_processes)

    # ------------------------------------------------------------------ one optimizer step
    def train_step(self) -> dict[str, float]:
        """One optimizer step on ``grad_accum`` micro-batches of ``batch_size`` turns per process: the
        gradient of the mean micro-batch loss, where each global micro-batch's loss is the mean over all
        its logged tokens, as in one process with the same global batch."""
        cfg, acc = self.cfg, self.accelerator
        self.policy.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for i in range(cfg.grad_accum):
            batch = self.data.next_batch()
            autocast = (
                torch.autocast(self.device.type, dtype=torch.bfloat16) if self.use_bf16 else nullcontext()
            )
            # gradients are averaged across processes in the last micro-batch's backward only
            with acc.no_sync(self.model) if i < cfg.grad_accum - 1 else nullcontext():
                with autocast:
                    out = compute_loss(
                        self.model, batch, self._loss_config(), use_target=cfg.target == "polyak"
                    )
                acc.backward(out.loss * self._token_share(batch) / cfg.grad_accum)
            self.data.record_values(out.first_values)
            metrics = {
                "loss": out.loss.item(),
                "actor_loss": out.actor_loss.item(),
                "critic_loss": out.critic_loss.item(),
                **out.metrics,
            }
            for k, v in self._across_processes(metrics).items():
                totals[k] = totals.get(k, 0.0) + v / cfg.grad_accum
        if not math.isfinite(totals["loss"]):  # the same in every process: they all stop here
            raise TrainingDiverged(
                f"non-finite loss at step {self.step} (actor {totals['actor_loss']}, critic "
                f"{totals['critic_loss']}); the last good checkpoint is kept in {self.run_dir}"
            )
        params = [p for p in self.policy.trainable_parameters() if p.grad is not None]
        grad_norm = acc.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if not torch.isfinite(grad_norm):
            raise TrainingDiverged(f"non-finite gradient at step {self.step}; last good checkpoint kept")
        self.optimizer.step()
        self.scheduler.step()
        if cfg.target == "polyak":
            self.policy.update_target(cfg.tau)
        self.step += 1
        totals["grad_norm"] = float(grad_norm)
        totals["lr"] = self.scheduler.get_last_lr()[0]
        return totals

    def _loss_config(self) -> AFSFTConfig:
        """The loss of this step: plain imitation (filter ``none``, critic still trained) for the first
        ``filter_warmup_steps`` steps, then ``cfg.loss``."""
        if self.step < self.cfg.filter_warmup_steps and self.cfg.loss.filter != "none":
            return dataclasses.replace(self.cfg.loss, filter="none")
        return self.cfg.loss

    def _token_share(self, batch: Any) -> torch.Tensor:
        """This process's loss weight: its share of the global micro-batch's logged tokens times the
        number of processes. Each process's loss is a mean over its own tokens and DDP averages the
        gradients, so with this weight the result is the gradient of the mean over all the tokens
        (exactly 1 in a single process)."""
        tokens = batch.inputs["response_mask"].sum().float()
        total = self.accelerator.reduce(tokens, reduction="sum")
        return tokens * self.accelerator.num_processes / total.clamp(min=1.0)

    @staticmethod
    def _across_processes(metrics: dict[str, float]) -> dict[str, float]:
        """Metrics of the global micro-batch: ``tokens`` summed over processes, the others averaged
        with the processes' token counts as weights (exact for means over tokens, e.g. the losses)."""
        per_process: list[dict[str, float]] = gather_object([metrics])
        tokens = [m["tokens"] for m in per_process]
        total = sum(tokens)
        weights = [t / total for t in tokens] if total > 0 else [1 / len(tokens)] * len(tokens)
        merged = {"tokens": total}
        for k in dict.fromkeys(k for m in per_process for k in m if k != "tokens"):
            merged[k] = sum(w * m.get(k, 0.0) for w, m in zip(weights, per_process, strict=True))
        return merged

    # ------------------------------------------------------------------ evaluation
    def rank(self) -> dict[str, float]:
        """The critic's ranking accuracy on the held-out probe states (``{}`` without probes)."""
        acc = ranking_accuracy(self.policy, self.probes)
        if acc is None:
            return {}
        self.last_ranking = acc
        self.logger.scalars(self.step, {"ranking_accuracy": acc}, prefix="critic/")
        return {"critic/ranking_accuracy": acc}

    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        ranking = self.rank()
        results: dict[str, float] = {}
        modes = [("greedy", 0.0)] + ([("sampled", cfg.temperature)] if cfg.eval_sampled else [])
        for name, temp in modes:
            stats = evaluate_policy(
                self.policy,
                cfg.env,
                episodes=cfg.eval_episodes,
                temperature=temp,
                num_envs=cfg.num_envs,
                seed=cfg.eval_seed if cfg.eval_seed is not None else cfg.seed + 1_000_000,
                max_new_tokens=cfg.max_new_tokens,
                cot=cfg.cot,
                show_progress=False,
            )
            results.update({f"{name}/{k}": v for k, v in stats.metrics().items()})
            if name == "greedy":
                self.logger.text(self.step, "eval/samples", stats.samples[:5])
        self.logger.scalars(self.step, results, prefix="eval/")
        self.history.append({"step": self.step, **results, **ranking})
        return results

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.time()
        show = self.show_progress and self.is_main
        bar = progress_bar(total=cfg.total_steps, initial=self.step, desc="train", disable=not show)
        if self.step == 0 and cfg.eval_at_start and cfg.eval_every > 0 and cfg.eval_episodes > 0:
            self._on_main(self.evaluate)  # the starting point of the learning curve
        try:
            while self.step < cfg.total_steps:
                if cfg.online and self.step >= cfg.steps and cfg.online_mode == "async":
                    self._async_online()
                elif cfg.online and self.step >= cfg.steps:
                    round_idx = (self.step - cfg.steps) // cfg.online_steps
                    if round_idx >= self.online_round:
                        self._on_main(self._collect_online, round_idx)
                        self.data.replay.refresh()  # the other processes read the new round from disk
                        self.online_round = round_idx + 1
                metrics = self.train_step()
                bar.update(1)
                bar.set_postfix(
                    loss=f"{metrics['loss']:.3f}", passed=f"{metrics.get('filter_pass_frac', 0):.2f}"
                )
                if self.step % cfg.log_every == 0 or self.step == cfg.total_steps:
                    self.logger.scalars(self.step, metrics, prefix="train/")
                periodic = cfg.eval_every > 0 and self.step % cfg.eval_every == 0
                if cfg.eval_episodes > 0 and (periodic or self.step == cfg.total_steps):
                    self._on_main(self.evaluate)
                elif cfg.rank_every > 0 and (self.step % cfg.rank_every == 0 or self.step == cfg.total_steps):
                    self._on_main(self.rank)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.total_steps:
                    self._on_main(self.save)
        finally:
            bar.close()
            if self.collector_procs:
                stop_collectors(self.collector_procs)
        if self.async_started and self.is_main:
            self._log_collectors()
        summary = self.summary(time.time() - t0)
        if self.is_main:
            atomic_write_json(self.run_dir / "summary.json", summary)
            with suppress(ValueError):  # no metrics to draw yet
                plot_runs([self.run_dir], self.run_dir / "curves.png")
        self.logger.close()
        return summary

    def _on_main(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the main process only; the other processes wait for it at a barrier."""
        if self.is_main:
            fn(*args)
        self.accelerator.wait_for_everyone()

    def _collect_online(self, round_idx: int) -> None:
        stats, samples = self.data.collect_online(round_idx)
        self.logger.scalars(self.step, stats, prefix="online/")
        self.logger.text(self.step, "online/samples", samples)

    # ------------------------------------------------------------------ asynchronous collection
    def _async_online(self) -> None:
        """Start the collectors when the online phase starts (publishing the weights first), publish
        every ``online_steps`` steps, and move every process's replay window to the same shards."""
        if not self.async_started:
            self._on_main(self._start_collectors)
            self.async_started = True
        elif (self.step - self.cfg.steps) % self.cfg.online_steps == 0:
            self._on_main(self._publish)
        replay = self.data.replay
        if self.is_main:
            replay.refresh()  # every shard on disk now
        if self.accelerator.num_processes > 1:  # the others take the same shards
            n = broadcast_object_list([replay.num_window_shards if self.is_main else 0])[0]
            if not self.is_main:
                replay.refresh(max_shards=n)

    def _start_collectors(self) -> None:
        cfg = self.cfg
        self.collector_logs = CollectorLogs(self.run_dir)
        self.collector_logs.new_rounds()  # rounds before a resume were logged by the killed run
        if self.last_saved != self.step:
            self.save()  # the collectors' first weights
        if cfg.collectors > 0:
            self.collector_procs = start_collectors(self.run_dir, cfg.collectors, cfg.collector_device)
        else:
            print(f"waiting for online episodes: start collectors with `vlmq collect-online {self.run_dir}`")
        while not self.data.replay.online.shards():
            codes = [p.poll() for p in self.collector_procs]
            if codes and all(c is not None for c in codes):
                raise CollectorsFailed(
                    f"all {len(codes)} collectors exited (codes {codes}) before their first episodes; "
                    f"see {self.run_dir / 'collectors'}/*.log"
                )
            time.sleep(0.2)

    def _publish(self) -> None:
        if self.last_saved != self.step:
            self.save()
        self._log_collectors()

    def _log_collectors(self) -> None:
        """Log the collectors' rounds recorded since the last call (``online/*`` at this step)."""
        stats = CollectorLogs.summarize(self.collector_logs.new_rounds(), self.step)
        if stats:
            stats["replay_online_episodes"] = float(self.data.replay.num_online_episodes)
            self.logger.scalars(self.step, stats, prefix="online/")

    def save(self) -> Path:
        self.last_saved = self.step
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "online_round": self.online_round,
            "data": self.data.state_dict(),
            "history": self.history,
        }
        return save_checkpoint(self.run_dir, self.step, self.policy, state, keep=self.cfg.keep_checkpoints)

    def summary(self, wall_s: float) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        ranking = self.last_ranking
        chance = blind_accuracy(self.probes)
        warning = ranking_verdict(ranking, chance) if self.cfg.loss.filter != "none" else None
        return {
            "env": self.cfg.env,
            "model": self.cfg.model,
            "filter": self.cfg.loss.filter,
            "steps": self.step,
            "online": self.cfg.online,
            "online_mode": self.cfg.online_mode,
            "final_eval": last,
            "ranking_accuracy": ranking,
            "ranking_chance": chance if self.probes else None,
            "warnings": [warning] if warning else [],
            "evals": self.history,
            "wall_time_s": round(wall_s, 1),
            "trainable_parameters": int(sum(p.numel() for p in self.policy.trainable_parameters())),
            "critic_init_bias": self.critic_init_bias,
            "device": str(self.device),
            "processes": self.accelerator.num_processes,
        }


def train(cfg: TrainConfig, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run (or resume) training; returns the summary also written to ``summary.json``."""
    return Learner(cfg, resume=resume, show_progress=show_progress).run()
