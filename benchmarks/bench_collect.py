"""Collection throughput: episodes/s of scripted policies written to a dataset, by env layout.

For each Gym Cards task and scripted policy, ``vlmq.rollout.collect`` runs ``--episodes``
episodes into a fresh store with each layout: ``1-sync`` (one env in this process, the baseline),
``2-sync`` (two envs stepped in this process) and ``2-async`` (two subprocess workers; ``N-async``
for other counts). Each figure is also given as a ratio to the baseline measured in the same run.
Times include rendering, PNG encoding, the atomic Parquet appends and, for workers, their start-up.

Writes ``benchmarks/results/bench_collect.json``. Example::

    python benchmarks/bench_collect.py --episodes 100
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from vlmq.rollout import collect
from vlmq.utils.io import atomic_write_json

TASKS = ["gym_cards/NumberLine", "gym_cards/Blackjack", "gym_cards/EZPoints", "gym_cards/Points24"]


def parse_layout(text: str) -> tuple[int, bool]:
    """``"2-async"`` -> ``(2, True)``."""
    n, _, mode = text.partition("-")
    if mode not in ("sync", "async") or not n.isdigit():
        raise argparse.ArgumentTypeError(f"layout must look like 2-sync or 2-async, got {text!r}")
    return int(n), mode == "async"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--policies", nargs="*", default=["random", "expert", "noisy"])
    ap.add_argument("--layouts", nargs="*", default=["1-sync", "2-sync", "2-async"])
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--tasks", nargs="*", default=TASKS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_collect.json")
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    print(f"{'task':<22} {'policy':<7} {'layout':>8} {'episodes/s':>11} {'steps/s':>8} {'success':>8} "
          f"{'vs 1-sync':>9}")  # fmt: skip
    for task in args.tasks:
        for policy in args.policies:
            base = None
            for layout in args.layouts:
                n, asynchronous = parse_layout(layout)
                with tempfile.TemporaryDirectory() as d:
                    s = collect(task, policy, args.episodes, num_envs=n, asynchronous=asynchronous,
                                epsilon=args.epsilon, seed=args.seed, out=Path(d) / "ds",
                                show_progress=False)  # fmt: skip
                m = s.metrics()
                base = base or m["episodes_per_s"]
                ratio = m["episodes_per_s"] / base
                rows.append({"task": task, "policy": policy, "layout": layout, "num_envs": n,
                             "asynchronous": asynchronous, **m, "ratio_vs_1_sync": ratio})  # fmt: skip
                print(f"{task:<22} {policy:<7} {layout:>8} {m['episodes_per_s']:>11.1f} "
                      f"{m['steps_per_s']:>8.0f} {m['success_rate']:>8.2f} {ratio:>8.2f}x")  # fmt: skip
    meta = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "episodes": args.episodes,
        "epsilon": args.epsilon,
        "seed": args.seed,
        "note": "wall time includes env rendering, PNG encoding, atomic Parquet appends, worker start-up",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {"meta": meta, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
