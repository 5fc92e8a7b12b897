"""Success rates and speed of the scripted policies on every BabyAI level and MiniWoB++ task.

    python benchmarks/env_domains.py --episodes 200 --miniwob-episodes 20

Writes ``benchmarks/results/env_domains.json``: for each env id and policy (random, noisy with
epsilon 0.2, expert) the success rate, mean episode length and env steps per second (policy +
``step`` time, seeded resets excluded; MiniWoB browser start-up excluded).

Parallel collection (expert episodes in 1, 2, 4 subprocess workers, one browser each for MiniWoB;
wall-clock steps/s with resets and policy included, start-up excluded, see ``vlmq.rollout``):

    python benchmarks/env_domains.py --workers 1,2,4 --episodes 200 --miniwob-episodes 20

With ``--workers`` only the ``--worker-envs`` are run, into ``results/env_domains_workers.json``
(add ``--domains`` for the full table too).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from vlmq.envs import TextEnv, list_envs, make
from vlmq.rollout import play

POLICIES: tuple[tuple[str, float], ...] = (("random", 0.0), ("noisy", 0.2), ("expert", 0.0))


def evaluate(env: TextEnv, policy: str, eps: float, episodes: int, seed0: int = 0) -> dict[str, Any]:
    """Run ``episodes`` seeded episodes of one scripted policy."""
    wins = strict = steps = 0
    step_time = 0.0
    for ep in range(episodes):
        env.reset(seed=seed0 + ep)
        while True:
            t = time.perf_counter()
            _, _, term, trunc, info = env.step(env.scripted_action(policy, eps))
            step_time += time.perf_counter() - t
            steps += 1
            if term or trunc:
                break
        wins += bool(info["success"])
        strict += bool(info["strict_success"])
    return {
        "episodes": episodes,
        "success_rate": wins / episodes,
        "strict_success_rate": strict / episodes,
        "mean_length": steps / episodes,
        "steps_per_s": steps / step_time if step_time else None,
    }


def scaling(env_ids: list[str], workers: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """Expert collection speed of each env with each number of subprocess workers."""
    out: dict[str, Any] = {}
    for env_id in env_ids:
        n = args.miniwob_episodes if env_id.startswith("miniwob/") else args.episodes
        out[env_id] = {}
        for w in workers:
            stats = play(env_id, "expert", episodes=n, num_envs=w)
            out[env_id][str(w)] = {
                "episodes": n,
                "steps": stats.steps,
                "success_rate": stats.success_rate,
                "steps_per_s": stats.steps_per_s,
            }
            print(
                f"{env_id:28s} workers {w}: {stats.steps_per_s:8.1f} steps/s "
                f"({stats.steps} steps, success {stats.success_rate:.2f})",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="episodes per BabyAI level and policy")
    parser.add_argument(
        "--miniwob-episodes", type=int, default=20, help="episodes per MiniWoB task and policy"
    )
    parser.add_argument("--domains", nargs="+", default=None, help="default: babyai miniwob")
    parser.add_argument(
        "--workers", default=None, help="comma-separated worker counts for parallel collection, e.g. 1,2,4"
    )
    parser.add_argument("--worker-envs", nargs="+", default=["babyai/GoToLocal", "miniwob/click-button"])
    parser.add_argument("--out", type=Path, default=None, help="default: results/env_domains[_workers].json")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "envs": {},
    }
    domains = args.domains if args.domains is not None else ([] if args.workers else ["babyai", "miniwob"])
    if args.out is None:
        name = "env_domains_workers.json" if args.workers and not domains else "env_domains.json"
        args.out = Path(__file__).parent / "results" / name
    if args.workers:
        results["workers"] = scaling(args.worker_envs, [int(w) for w in args.workers.split(",")], args)
    for domain in domains:
        n = args.episodes if domain == "babyai" else args.miniwob_episodes
        for spec in list_envs(domain):
            env = make(spec.env_id)
            try:
                t = time.perf_counter()
                env.reset(seed=10**6)  # starts the browser for MiniWoB
                startup = time.perf_counter() - t
                row = {p if p != "noisy" else f"noisy_{eps}": evaluate(env, p, eps, n) for p, eps in POLICIES}
            finally:
                env.close()
            row["first_reset_s"] = startup
            results["envs"][spec.env_id] = row
            print(
                f"{spec.env_id:28s} "
                + "  ".join(
                    f"{k}: {v['success_rate']:.2f} ({v['steps_per_s']:.0f} st/s)"
                    for k, v in row.items()
                    if isinstance(v, dict)
                ),
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
