"""Collection throughput: episodes/s of scripted policies written to a dataset, by worker count.

For each Gym Cards task and policy, ``vlmq.data.collect.collect`` runs ``--episodes`` episodes into a
fresh store with 1 in-process env (the baseline) and with 2 and 4 subprocess workers; each figure is
also given as a ratio to the baseline measured in the same run. Times include rendering, PNG encoding
and the atomic Parquet appends (and, for workers, their start-up).

Writes ``benchmarks/results/bench_collect.json``. Example::

    python benchmarks/bench_collect.py --episodes 200
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from vlmq.data.collect import collect
from vlmq.utils.io import atomic_write_json

TASKS = ["gym_cards/NumberLine", "gym_cards/Blackjack", "gym_cards/EZPoints", "gym_cards/Points24"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--policies", nargs="*", default=["random", "expert"])
    ap.add_argument("--workers", nargs="*", type=int, default=[1, 2, 4])
    ap.add_argument("--tasks", nargs="*", default=TASKS)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_collect.json")
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    print(f"{'task':<22} {'policy':<8} {'workers':>7} {'episodes/s':>11} {'steps/s':>8} {'vs 1 env':>9}")
    for task in args.tasks:
        for policy in args.policies:
            base = None
            for n in args.workers:
                with tempfile.TemporaryDirectory() as d:
                    s = collect(task, policy, args.episodes, num_envs=n, asynchronous=n > 1,
                                out=Path(d) / "ds", show_progress=False)  # fmt: skip
                m = s.metrics()
                base = base or m["episodes_per_s"]
                ratio = m["episodes_per_s"] / base
                rows.append({"task": task, "policy": policy, "workers": n, **m, "ratio_vs_1": ratio})
                print(f"{task:<22} {policy:<8} {n:>7} {m['episodes_per_s']:>11.1f} {m['steps_per_s']:>8.0f} "
                      f"{ratio:>8.2f}x")  # fmt: skip
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "episodes": args.episodes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {"meta": meta, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
