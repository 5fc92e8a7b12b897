"""The benchmark suite: one entry point, JSON + Markdown, every figure against a same-run baseline.

    python benchmarks/run.py            # CPU: ~5 minutes on 2 cores
    python benchmarks/run.py --full     # + a SmolVLM-256M-sized random model (slow on a CPU)
    python benchmarks/run.py --device cuda --dtype bfloat16 --full

Sections (each ratio's baseline is measured in the same run, interleaved, medians of ``--reps``):

- ``learner``: the AFSFT optimizer step of vlmq (``compute_loss`` with the binary filter: backbone
  pass, actor + critic + target heads at response positions, gradient-free bootstrap pass over the
  next observations, backward, AdamW) against a plain SFT step (backbone pass, LM head, token
  cross-entropy, backward, AdamW) on the same batch of real NumberLine turns; tokens/s of both. Then the same
  on batches of *segments* of consecutive turns (``--segment-layouts``: 2 x 4 and 1 x 8 turns, as
  ``TrainConfig.segment_turns`` samples them): the AFSFT step with linked next states
  (``make_batch(link=True)``: only each segment's last turn is bootstrapped), the AFSFT step with the
  bootstrap pass over every next observation (the old path) and the SFT step, all three interleaved;
  and the AFSFT step with *backward lanes* (``TrainConfig.backward_lanes``: the lanes' successive
  batches, next-turn values carried from the step before) against SFT on the same batches.
  (``vlmq train --filter none`` runs the AFSFT path with the critic loss at weight 0: the heads run,
  the bootstrap pass is skipped; the ``peer`` section times it.)
- ``policy``: critic-head overhead and image-feature cache on a bare forward+backward, and batched
  KV-cached generation against one-prompt-at-a-time generation (``policy_cost.bench_model``; both
  use ``transformers``' own ``generate``, so there is no third loop to compare).
- ``envs``: env steps/s of the expert on one task per domain, and collection episodes/s (start-up of
  workers and browsers included) with 1 env in this process and with 2 and 4 subprocess workers
  (ratio to the single env) for Gym Cards NumberLine and MiniWoB++ click-button.
- ``memory``: peak resident memory (and peak CUDA memory) of a process that loads the model and
  runs training steps, measured in a fresh subprocess.
- ``peer``: vlmq's plain SFT step (with and without the image-feature cache) against TRL's
  ``SFTTrainer`` on the same ``tiny`` model, LoRA, NumberLine turns and batch size, the steps
  interleaved in one run (``trl_peer.py``); steps/s, tokens/s, ratios, versions. TRL is a
  benchmark-only dependency (``pip install -e '.[bench]'``): without it the section records why it
  was skipped.
- ``online`` (only with ``--online``): the online phase of a ``tiny`` NumberLine run (the same rounds, steps and episodes per
  round) with synchronous rounds against asynchronous collection (one collector process beside the
  learner): wall time and online episodes per second (collector start-up included). Off by default:
  on a 2-core CPU the learner, the collector and their thread pools compete for the same cores (one
  attempt took over 10 minutes with another job running), so it measures contention, not overlap.

``--sections learner,policy`` runs only those sections (``online`` still needs ``--online``).

Writes ``benchmarks/results/suite.json`` and ``benchmarks/results/suite.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from policy_cost import _sync, bench_model
from trl_peer import bench_peer, peer_markdown

RESULTS = Path(__file__).parent / "results"
SECTIONS = ("learner", "policy", "memory", "peer", "envs")
DOMAIN_TASKS = ("gym_cards/NumberLine", "gym_cards/Points24", "babyai/GoToLocal", "miniwob/click-button")


# ----------------------------------------------------------------------------- learner
def _time_steps(fns: dict[str, Any], reps: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU seconds of each function over ``reps`` rounds (one warm-up each).
    The functions alternate within a round, in an order rotated every round, so drifts of a shared
    machine and any position effect hit all of them alike. On a CPU shared with other jobs the CPU
    time is the steadier measure (wall time also counts waiting for a core); on CUDA only wall time
    means anything."""
    for fn in fns.values():
        fn()
    names = list(fns)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            fns[k]()
            _sync(device)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {
        "wall": {k: statistics.median(v) for k, v in wall.items()},
        "cpu": {k: statistics.median(v) for k, v in cpu.items()},
    }


def numberline_samples(n: int) -> list[Any]:
    """``n`` real NumberLine turns (random policy, seeded) as :class:`~vlmq.data.batches.TurnSample`."""
    from vlmq.data.batches import samples_from_rows
    from vlmq.data.store import EpisodeStore
    from vlmq.rollout import collect

    with tempfile.TemporaryDirectory() as d:
        collect("gym_cards/NumberLine", "random", max(4, n), out=Path(d) / "ds", show_progress=False)
        rows = list(EpisodeStore(Path(d) / "ds").iter_turns())
    return samples_from_rows(rows)[:n]


def numberline_batch(policy: Any, n: int) -> Any:
    """``n`` real NumberLine turns (random policy) as a training batch for ``policy``."""
    from vlmq.data.batches import make_batch

    return make_batch(policy, numberline_samples(n))


def numberline_segments(n_segments: int, segment_turns: int) -> list[Any]:
    """``n_segments`` segments of ``segment_turns`` consecutive turns of real NumberLine episodes
    (random policy), each from another episode, as training samples in segment order. Each segment's
    last turn has a next observation that no row of the batch holds (a random walk often comes back to
    a state it was in, and ``make_batch`` links any row with the same observation): the linked batch
    keeps one bootstrap row per segment, the case of segments cut from longer episodes."""
    from vlmq.data.batches import episode_segments, samples_from_rows
    from vlmq.data.store import EpisodeStore
    from vlmq.rollout import collect

    with tempfile.TemporaryDirectory() as d:
        collect("gym_cards/NumberLine", "random", 64, out=Path(d) / "ds", show_progress=False)
        samples = samples_from_rows(EpisodeStore(Path(d) / "ds").iter_turns())
    chosen: list[Any] = []
    held: set[tuple[str, bytes]] = set()  # observations of the chosen rows
    ends: set[tuple[str | None, bytes | None]] = set()  # next observations of the chosen segments' ends
    episodes: set[str | None] = set()
    for seg in episode_segments(samples, segment_turns):
        rows = [samples[i] for i in seg]
        keys = {(s.prompt, s.image) for s in rows}
        end = (rows[-1].next_prompt, rows[-1].next_image)
        if (
            len(seg) == segment_turns
            and rows[-1].next_image is not None
            and rows[-1].episode_id not in episodes
            and end not in held | keys
            and not ends & keys
        ):
            chosen += rows
            held |= keys
            ends.add(end)
            episodes.add(rows[-1].episode_id)
        if len(episodes) == n_segments:
            return chosen
    raise RuntimeError(f"fewer than {n_segments} NumberLine episodes with {segment_turns + 1} turns")


def sft_loss(policy: Any, batch: Any, use_feature_cache: bool | None = None) -> torch.Tensor:
    """Plain SFT: token cross-entropy of the response under the LM head (no critic, no bootstrap);
    ``use_feature_cache`` as :meth:`Policy.hidden <vlmq.models.policy.Policy.hidden>`."""
    from vlmq.train.objective import gather_positions, response_positions

    state_pos, mask = response_positions(batch.inputs["response_mask"])
    h = gather_positions(policy.hidden(batch.inputs, use_feature_cache), state_pos)
    actions = gather_positions(batch.inputs["input_ids"], state_pos + 1)
    logp = torch.log_softmax(policy.actor_logits(h).float(), -1).gather(-1, actions[..., None])[..., 0]
    return -(logp * mask).sum() / mask.sum().clamp(min=1)


def bench_learner(policy: Any, batch_size: int, reps: int) -> dict[str, Any]:
    from vlmq.algo.afsft import AFSFTConfig
    from vlmq.train.objective import compute_loss

    batch = numberline_batch(policy, batch_size)
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-6)
    cfg = AFSFTConfig(filter="binary")
    policy.train()

    def step(loss_fn: Any) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    both = _time_steps(
        {
            "afsft": lambda: step(lambda: compute_loss(policy, batch, cfg).loss),
            "sft": lambda: step(lambda: sft_loss(policy, batch)),
        },
        reps,
        policy.device,
    )
    t, c = both["wall"], both["cpu"]
    tokens = int(batch.inputs["attention_mask"].sum())
    return {
        "batch": batch_size,
        "tokens_per_batch": tokens,
        "next_obs_tokens": int(batch.next_inputs["attention_mask"].sum()) if batch.next_inputs else 0,
        "afsft_step_s": round(t["afsft"], 4),
        "sft_step_s": round(t["sft"], 4),
        "afsft_over_sft": round(t["afsft"] / t["sft"], 3),
        "afsft_over_sft_cpu": round(c["afsft"] / c["sft"], 3),
        "afsft_tokens_per_s": round(tokens / t["afsft"], 1),
        "sft_tokens_per_s": round(tokens / t["sft"], 1),
    }


def bench_learner_segments(policy: Any, n_segments: int, segment_turns: int, reps: int) -> dict[str, Any]:
    """AFSFT with linked next states, AFSFT with the bootstrap pass over every next observation, and
    SFT, interleaved, on one batch of ``n_segments`` segments of ``segment_turns`` turns."""
    from vlmq.algo.afsft import AFSFTConfig
    from vlmq.data.batches import make_batch
    from vlmq.train.objective import compute_loss

    samples = numberline_segments(n_segments, segment_turns)
    linked, boot = make_batch(policy, samples, link=True), make_batch(policy, samples, link=False)
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-6)
    cfg = AFSFTConfig(filter="binary")
    policy.train()

    def step(loss_fn: Any) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    both = _time_steps(
        {
            "linked": lambda: step(lambda: compute_loss(policy, linked, cfg).loss),
            "bootstrap": lambda: step(lambda: compute_loss(policy, boot, cfg).loss),
            "sft": lambda: step(lambda: sft_loss(policy, linked)),
        },
        reps,
        policy.device,
    )
    t, c = both["wall"], both["cpu"]
    tokens = int(linked.inputs["attention_mask"].sum())

    def rows(b: Any) -> int:
        return 0 if b.next_inputs is None else int(b.next_inputs["input_ids"].shape[0])

    return {
        "batch": len(samples),
        "segments": f"{n_segments} x {segment_turns}",
        "tokens_per_batch": tokens,
        "bootstrap_rows_linked": rows(linked),
        "bootstrap_rows_old": rows(boot),
        "linked_step_s": round(t["linked"], 4),
        "bootstrap_step_s": round(t["bootstrap"], 4),
        "sft_step_s": round(t["sft"], 4),
        "linked_over_sft": round(t["linked"] / t["sft"], 3),
        "bootstrap_over_sft": round(t["bootstrap"] / t["sft"], 3),
        "linked_over_sft_cpu": round(c["linked"] / c["sft"], 3),
        "bootstrap_over_sft_cpu": round(c["bootstrap"] / c["sft"], 3),
        "linked_tokens_per_s": round(tokens / t["linked"], 1),
    }


def bench_learner_lanes(policy: Any, batch_size: int, reps: int) -> dict[str, Any]:
    """AFSFT with backward lanes (``TrainConfig.backward_lanes``: next-turn values carried from the
    previous step, a bootstrap row only where a lane starts a run with a next state) against SFT,
    interleaved, on the lanes' successive batches over 64 random NumberLine episodes (steady state:
    the batches after every lane has started once)."""
    import itertools

    from vlmq.algo.afsft import AFSFTConfig
    from vlmq.data.batches import make_batch
    from vlmq.data.lanes import LANE_SEGMENT, BackwardLanes
    from vlmq.data.replay import ReplayStore
    from vlmq.data.store import EpisodeStore
    from vlmq.rollout import collect
    from vlmq.train.objective import compute_loss

    with tempfile.TemporaryDirectory() as d:
        collect("gym_cards/NumberLine", "random", 64, out=Path(d) / "ds", show_progress=False)
        replay = ReplayStore(
            Path(d) / "on", EpisodeStore(Path(d) / "ds"), 100, 0.0, segment_turns=LANE_SEGMENT
        )
        lanes = BackwardLanes(replay, batch_size, np.random.default_rng(0))
        batches = []
        for k in range(64 + reps + 1):
            turns, carried = lanes.next()
            lanes.record([0.0] * batch_size)  # the values do not change the cost
            if k >= 64:
                batches.append(make_batch(policy, turns, next_values=carried))
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-6)
    cfg = AFSFTConfig(filter="binary")
    policy.train()
    lane_it, sft_it = itertools.cycle(batches), itertools.cycle(batches)

    def step(loss_fn: Any) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    both = _time_steps(
        {
            "lanes": lambda: step(lambda: compute_loss(policy, next(lane_it), cfg).loss),
            "sft": lambda: step(lambda: sft_loss(policy, next(sft_it))),
        },
        reps,
        policy.device,
    )
    t, c = both["wall"], both["cpu"]
    boot_rows = [0 if b.next_inputs is None else int(b.next_inputs["input_ids"].shape[0]) for b in batches]
    return {
        "batch": batch_size,
        "batches": len(batches),
        "bootstrap_rows_per_batch": round(float(np.mean(boot_rows)), 3),
        "lanes_step_s": round(t["lanes"], 4),
        "sft_step_s": round(t["sft"], 4),
        "lanes_over_sft": round(t["lanes"] / t["sft"], 3),
        "lanes_over_sft_cpu": round(c["lanes"] / c["sft"], 3),
    }


# ----------------------------------------------------------------------------- environments
def bench_envs(episodes: int, miniwob_episodes: int, workers: list[int]) -> dict[str, Any]:
    from vlmq.rollout import collect, play

    out: dict[str, Any] = {"steps_per_s": {}, "collection": {}}
    for env_id in DOMAIN_TASKS:
        n = miniwob_episodes if env_id.startswith("miniwob/") else episodes
        stats = play(env_id, "expert", episodes=n)
        out["steps_per_s"][env_id] = round(stats.steps_per_s, 1)
    for env_id in ("gym_cards/NumberLine", "miniwob/click-button"):
        n = miniwob_episodes if env_id.startswith("miniwob/") else episodes
        rows: dict[str, Any] = {}
        for w in workers:
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()  # start-up of workers and browsers included (the stats leave it out)
                collect(env_id, "expert", n, num_envs=w, asynchronous=w > 1, out=Path(d) / "ds",
                        show_progress=False)  # fmt: skip
                wall = time.perf_counter() - t0
            rows[str(w)] = {"episodes_per_s": round(n / wall, 2)}
        base = rows[str(workers[0])]["episodes_per_s"]
        for r in rows.values():
            r["ratio"] = round(r["episodes_per_s"] / base, 2) if base else None
        out["collection"][env_id] = rows
    return out


# ----------------------------------------------------------------------------- memory
_MEMORY_CHILD = """
import json, resource, sys, torch
sys.path.insert(0, {bench!r})
from run import load_policy, numberline_batch
from vlmq.algo.afsft import AFSFTConfig
from vlmq.train.objective import compute_loss
policy = load_policy({model!r}, {device!r}, {dtype!r})
batch = numberline_batch(policy, {batch})
opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-6)
for _ in range(2):
    opt.zero_grad(); compute_loss(policy, batch, AFSFTConfig()).loss.backward(); opt.step()
cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
print(json.dumps({{"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_cuda_mib": cuda}}))
"""


def bench_memory(model: str, device: str, dtype: str, batch: int) -> dict[str, Any]:
    code = _MEMORY_CHILD.format(bench=str(Path(__file__).parent), model=model, device=device,
                                dtype=dtype, batch=batch)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"batch": batch, **json.loads(out.stdout.strip().splitlines()[-1])}


def load_policy(model: str, device: str, dtype: str) -> Any:
    """The shipped ``tiny`` (or any model name/folder), or ``smolvlm-sized`` (random, built offline)."""
    from vlmq.models.policy import Policy, PolicyConfig

    if model == "smolvlm-sized":
        from vlmq.models.tiny import build_smolvlm_sized

        base, proc = build_smolvlm_sized(dtype=getattr(torch, dtype))
        return Policy(base, proc, PolicyConfig(dtype=dtype)).to(device)
    return Policy.from_pretrained(model, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- online phase
def bench_online(rounds: int, steps: int, episodes: int, device: str) -> dict[str, Any]:
    """Sync vs async online phase of ``tiny`` on NumberLine (no offline steps, no evaluation)."""
    from vlmq.data.store import EpisodeStore
    from vlmq.rollout import collect
    from vlmq.train.config import TrainConfig
    from vlmq.train.learner import train

    out: dict[str, Any] = {"rounds": rounds, "steps_per_round": steps, "episodes_per_round": episodes}
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        collect("gym_cards/NumberLine", "random", 32, num_envs=4, out=data, show_progress=False)
        for mode in ("sync", "async"):
            cfg = TrainConfig(
                env="gym_cards/NumberLine", model="tiny", data=str(data), out=str(Path(d) / mode), steps=0,
                lr=1e-3, eval_every=0, eval_episodes=0, checkpoint_every=10**6, online=True,
                online_mode=mode, collectors=1, collector_device=device, online_rounds=rounds,  # type: ignore[arg-type]
                online_steps=steps, online_episodes=episodes, num_envs=4, max_new_tokens=16, device=device,
            )  # fmt: skip
            summary = train(cfg, show_progress=False)
            n = EpisodeStore(Path(d) / mode / "replay").num_episodes
            out[mode] = {"wall_s": summary["wall_time_s"], "online_episodes": n,
                         "episodes_per_s": round(n / summary["wall_time_s"], 2)}  # fmt: skip
    out["async_over_sync_wall"] = round(out["async"]["wall_s"] / out["sync"]["wall_s"], 3)
    out["async_over_sync_episodes_per_s"] = round(
        out["async"]["episodes_per_s"] / out["sync"]["episodes_per_s"], 3
    )
    return out


# ----------------------------------------------------------------------------- report
def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    lines = [f"Machine: {m['machine']}, {m['cpus']} CPUs, torch {m['torch']}, device {m['device']} "
             f"({m['dtype']}), {m['threads']} threads; {m['wall_s']:.0f} s in all.", ""]  # fmt: skip
    if res.get("learner"):
        lines += ["| learner (NumberLine batch) | batch | AFSFT step s | SFT step s | AFSFT/SFT | AFSFT/SFT (CPU time) "
                  "| AFSFT tok/s |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in res.get("learner", {}).items():
        lines.append(f"| {name}, consecutive turns, bootstrap pass | {r['batch']} | {r['afsft_step_s']} | "
                     f"{r['sft_step_s']} | {r['afsft_over_sft']} | {r['afsft_over_sft_cpu']} | "
                     f"{r['afsft_tokens_per_s']} |")  # fmt: skip
    for name, r in res.get("learner_segments", {}).items():
        lines.append(f"| {name.split()[0]}, {r['segments']} segments, linked ({r['bootstrap_rows_linked']} bootstrap row{'' if r['bootstrap_rows_linked'] == 1 else 's'}) | "
                     f"{r['batch']} | {r['linked_step_s']} | {r['sft_step_s']} | {r['linked_over_sft']} | "
                     f"{r['linked_over_sft_cpu']} | {r['linked_tokens_per_s']} |")  # fmt: skip
        lines.append(f"| {name.split()[0]}, same batch, bootstrap pass ({r['bootstrap_rows_old']} rows, old path) | "
                     f"{r['batch']} | {r['bootstrap_step_s']} | {r['sft_step_s']} | {r['bootstrap_over_sft']} | "
                     f"{r['bootstrap_over_sft_cpu']} | {round(r['tokens_per_batch'] / r['bootstrap_step_s'], 1)} |")  # fmt: skip
    for name, r in res.get("learner_lanes", {}).items():
        lines.append(f"| {name}, backward lanes ({r['bootstrap_rows_per_batch']} bootstrap rows per batch) | "
                     f"{r['batch']} | {r['lanes_step_s']} | {r['sft_step_s']} | {r['lanes_over_sft']} | "
                     f"{r['lanes_over_sft_cpu']} | - |")  # fmt: skip
    if res.get("policy"):
        lines += ["", "| policy | critic head overhead (fwd+bwd) | feature cache speed-up | "
                  "batched / one-at-a-time generation (tok/s) | batched tok/s |", "|---|---|---|---|---|"]  # fmt: skip
    for name, r in res.get("policy", {}).items():
        lines.append(f"| {name} | {r['critic_overhead_ratio']} | {r['feature_cache_speedup']} | "
                     f"{r['gen_batching_speedup']} | {r['gen_batched_tokens_per_s']} |")  # fmt: skip
    envs = res.get("envs") or {"steps_per_s": {}, "collection": {}}
    if envs["steps_per_s"]:
        lines += ["", "| env (expert, 1 process) | steps/s |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in envs["steps_per_s"].items()]
    workers = list(next(iter(envs["collection"].values()), {}))
    lines += [] if not workers else ["", "| collection (expert) | " + " | ".join(f"{w} worker(s) ep/s (ratio)" for w in workers) + " |",
              "|---|" + "---|" * len(workers)]  # fmt: skip
    for env_id, rows in envs["collection"].items():
        lines.append(f"| {env_id} | " + " | ".join(
            f"{r['episodes_per_s']} ({r['ratio']}x)" for r in rows.values()) + " |")  # fmt: skip
    if res.get("online"):
        o = res["online"]
        lines += ["", f"| online phase, tiny NumberLine ({o['rounds']} x {o['steps_per_round']} steps, "
                  f"{o['episodes_per_round']} episodes per round) | wall s | online episodes | episodes/s |",
                  "|---|---|---|---|"]  # fmt: skip
        for mode in ("sync", "async"):
            r = o[mode]
            lines.append(f"| {mode} | {r['wall_s']} | {r['online_episodes']} | {r['episodes_per_s']} |")
        lines.append(
            f"| async / sync | {o['async_over_sync_wall']} | | {o['async_over_sync_episodes_per_s']} |"
        )
    if res.get("memory"):
        lines += [
            "",
            "| memory (2 AFSFT steps) | batch | peak RSS MiB | peak CUDA MiB |",
            "|---|---|---|---|",
        ]
    for name, r in res.get("memory", {}).items():
        cuda = f"{r['peak_cuda_mib']:.0f}" if r["peak_cuda_mib"] is not None else "-"
        lines.append(f"| {name} | {r['batch']} | {r['peak_rss_mib']:.0f} | {cuda} |")
    if "peer" in res:
        lines += ["", *peer_markdown(res["peer"])]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"  # a left-out section leaves no gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also a SmolVLM-256M-sized random model")
    ap.add_argument("--model", action="append", default=[], metavar="NAME_OR_DIR",
                    help="also this model (e.g. a `vlmq pretrain-tiny --out` folder) in the learner, policy "
                         "and memory sections, at --batch, after tiny; repeatable")  # fmt: skip
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--big-batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--segment-layouts", default="2x4,1x8",
                    help="learner batches of segments, SEGMENTSxTURNS, comma-separated (tiny only)")  # fmt: skip
    ap.add_argument("--no-lanes", dest="lanes", action="store_false",
                    help="leave out the learner step with backward lanes")  # fmt: skip
    ap.add_argument("--episodes", type=int, default=300, help="env episodes (Gym Cards, BabyAI)")
    ap.add_argument("--miniwob-episodes", type=int, default=60)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)",
    )
    ap.add_argument("--skip-envs", action="store_true", help="leave out the envs section")
    ap.add_argument("--online", action="store_true", help="also the sync vs async online phase")
    ap.add_argument("--online-rounds", type=int, default=4)
    ap.add_argument("--online-steps", type=int, default=25)
    ap.add_argument("--online-episodes", type=int, default=16)
    ap.add_argument("--out", type=Path, default=RESULTS / "suite.json")
    args = ap.parse_args()
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    if sections - set(SECTIONS):
        ap.error(f"--sections: unknown {sorted(sections - set(SECTIONS))}; choose from {', '.join(SECTIONS)}")
    if args.skip_envs:
        sections.discard("envs")
    t0 = time.time()
    torch.manual_seed(0)
    models = [("tiny", args.batch, args.reps)] + [(m, args.batch, args.reps) for m in args.model]
    models += [("smolvlm-sized", args.big_batch, 2)] if args.full else []
    res: dict[str, Any] = {k: {} for k in ("learner", "policy", "memory") if k in sections}
    for name, batch, reps in models if sections & {"learner", "policy", "memory"} else []:
        if sections & {"learner", "policy"}:
            policy = load_policy(name, args.device, args.dtype)
            if "learner" in sections:
                res["learner"][name] = bench_learner(policy, batch, reps)
                print(f"[learner {name}] {json.dumps(res['learner'][name])}", flush=True)
                for layout in (
                    args.segment_layouts.split(",") if name == "tiny" and args.segment_layouts else []
                ):
                    n_seg, k = (int(x) for x in layout.split("x"))
                    seg = bench_learner_segments(policy, n_seg, k, reps)
                    res.setdefault("learner_segments", {})[f"{name} {layout}"] = seg
                    print(f"[learner segments {name} {layout}] {json.dumps(seg)}", flush=True)
                if args.lanes:
                    lanes = bench_learner_lanes(policy, batch, reps)
                    res.setdefault("learner_lanes", {})[name] = lanes
                    print(f"[learner lanes {name}] {json.dumps(lanes)}", flush=True)
            if "policy" in sections:
                px = 512 if name == "smolvlm-sized" else 128
                res["policy"][name] = bench_model(name, policy, batch, reps, 16, px)
            del policy
        if "memory" in sections:
            res["memory"][name] = bench_memory(name, args.device, args.dtype, batch)
            print(f"[memory {name}] {json.dumps(res['memory'][name])}", flush=True)
    if "peer" in sections:  # the tiny model only: TRL's loop on the SmolVLM-sized model is slow on a CPU
        res["peer"] = bench_peer(numberline_samples(args.batch), args.reps, sft_loss, "tiny", args.device,
                                 args.dtype)  # fmt: skip
        print(f"[peer] {json.dumps(res['peer'])}", flush=True)
    if "envs" in sections:
        res["envs"] = bench_envs(
            args.episodes, args.miniwob_episodes, [int(w) for w in args.workers.split(",")]
        )
        print(f"[envs] {json.dumps(res['envs'])}", flush=True)
    if args.online:
        res["online"] = bench_online(args.online_rounds, args.online_steps, args.online_episodes, args.device)
        print(f"[online] {json.dumps(res['online'])}", flush=True)
    res["meta"] = {
        "machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "load_avg_at_start": os.getloadavg(), "wall_s": round(time.time() - t0, 1),
        "process_cpu_s": round(time.process_time(), 1),  # over wall_s: this process's share of the CPU
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    args.out.with_suffix(".md").write_text(md)
    print(md + f"wrote {args.out}")


if __name__ == "__main__":
    main()
