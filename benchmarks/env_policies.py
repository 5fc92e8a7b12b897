"""Scripted-policy baselines on the Gym Cards tasks: success rates and env speed.

For each task and each policy (uniform random over valid actions, epsilon-noisy expert, expert),
plays ``--episodes`` episodes with seeds ``seed .. seed+episodes-1`` (the same deals for every
policy) and reports the success rate (RL4VLM rule: episode over and summed reward > 0), the strict
success rate (target reached / formula correct / hand won), mean return, mean episode length and
env steps/s (reset + scripted action + step + rendering, single process).

Writes ``benchmarks/results/env_policies.json``. Example::

    python benchmarks/env_policies.py --episodes 1000
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

from vlmq.rollout import play
from vlmq.utils.io import atomic_write_json

TASKS = ["gym_cards/NumberLine", "gym_cards/Blackjack", "gym_cards/EZPoints", "gym_cards/Points24"]
POLICIES = ["random", "noisy", "expert"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epsilon", type=float, default=0.2, help="random-action rate of the noisy expert")
    ap.add_argument("--tasks", nargs="*", default=TASKS)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "env_policies.json")
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    header = f"{'task':<22} {'policy':<12} {'success %':>9} {'strict %':>9} {'return':>8} {'length':>7} {'steps/s':>8}"
    print(header)
    print("-" * len(header))
    t0 = time.time()
    for env_id in args.tasks:
        for policy in POLICIES:
            s = play(env_id, policy, args.episodes, args.seed, args.epsilon)
            rows.append(s.as_dict())
            name = f"noisy({args.epsilon:g})" if policy == "noisy" else policy
            print(
                f"{env_id:<22} {name:<12} {100 * s.success_rate:9.1f} {100 * s.strict_success_rate:9.1f} "
                f"{s.mean_return:8.3f} {s.mean_length:7.2f} {s.steps_per_s:8.0f}",
                flush=True,
            )
    result = {
        "episodes": args.episodes,
        "seed": args.seed,
        "epsilon": args.epsilon,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "wall_s": round(time.time() - t0, 1),
        "results": rows,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
