"""Measure every registered task: scripted-policy success over seeded episodes and env steps/s.

Resumable: one JSON line per (env id, policy, episodes) is appended to ``--out``; ids already there
are skipped, so an interrupted run continues where it stopped. ``--markdown`` prints the table
used in docs/envs.md from that file.

    python scripts/measure_envs.py --domain babyai --episodes 100 --out docs/results/envs_babyai.jsonl
    python scripts/measure_envs.py --domain miniwob --policy random --episodes 3 --out docs/results/envs_miniwob.jsonl
    python scripts/measure_envs.py --domain babyai --markdown docs/results/envs_babyai.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vlmq.envs import list_envs
from vlmq.rollout import play


def done_keys(out: Path) -> set[tuple[str, str, int]]:
    if not out.exists():
        return set()
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {(r["env_id"], r["policy"], r["episodes"]) for r in rows}


def measure(
    domain: str | None, policy: str, episodes: int, out: Path, only_expert: bool, ids: list[str]
) -> None:
    done = done_keys(out)
    specs = [s for s in list_envs(domain) if not ids or s.env_id in ids]
    for s in specs:
        if (s.env_id, policy, episodes) in done or (only_expert and policy != "random" and not s.expert):
            continue
        t0 = time.perf_counter()
        try:
            row = play(s.env_id, policy, episodes, seed=0).as_dict()
            row |= {"policy": policy, "error": ""}
        except Exception as exc:  # record and go on: the table says which tasks fail to run
            row = {
                "env_id": s.env_id,
                "policy": policy,
                "episodes": episodes,
                "error": f"{type(exc).__name__}: {exc}"[:300],
            }
        row["wall_s"] = round(time.perf_counter() - t0, 2)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"{s.env_id:<40} {row.get('success_rate', float('nan')):6.2f} {row.get('steps_per_s', 0):8.0f}/s {row['error']}",
            flush=True,
        )


def _load(paths: list[Path]) -> dict[tuple[str, str], dict]:
    """(env id, policy) -> the measurement with the most episodes."""
    best: dict[tuple[str, str], dict] = {}
    for p in paths:
        for line in p.read_text().splitlines() if p.exists() else []:
            if line.strip():
                r = json.loads(line)
                key = (r["env_id"], r["policy"])
                if key not in best or r["episodes"] >= best[key]["episodes"]:
                    best[key] = r
    return best


def _cell(r: dict | None) -> tuple[str, str]:
    """(success, steps/s) cells of one measurement."""
    if r is None:
        return "not measured", ""
    if r.get("error"):
        return f"error: {r['error'][:50]}", ""
    return f"{100 * r['success_rate']:.0f} % ({r['episodes']})", f"{r['steps_per_s']:.0f}"


def markdown(paths: list[Path], domain: str | None) -> str:
    """The docs/envs.md table: every registered task of ``domain``, measured or not."""
    best = _load(paths)
    with_random = any(policy == "random" for _, policy in best)
    rand_head = " random success (episodes) |" if with_random else ""
    lines = [
        f"| env id | expert | expert success (episodes) |{rand_head} env steps/s | mean length | note |",
        "|---|---|---|" + ("---|" if with_random else "") + "---|---|---|",
    ]
    for s in list_envs(domain):
        expert, rand = best.get((s.env_id, "expert")), best.get((s.env_id, "random"))
        e_cell, e_speed = _cell(expert) if expert is not None or s.expert else ("-", "")
        r_cell, r_speed = _cell(rand)
        speed = e_speed or r_speed or "not measured"
        used = expert if e_speed else rand if r_speed else None
        length = f"{used['mean_length']:.0f}" if used else ""
        r_col = f" {r_cell} |" if with_random else ""
        lines.append(
            f"| {s.env_id} | {'yes' if s.expert else 'no'} | {e_cell} |{r_col} {speed} | {length} | {s.note} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default=None)
    ap.add_argument("--policy", default="expert", choices=["expert", "random", "noisy"])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("docs/results/envs.jsonl"))
    ap.add_argument("--all", action="store_true", help="also tasks without an expert (expert policy)")
    ap.add_argument("--ids", nargs="*", default=[], help="only these env ids")
    ap.add_argument(
        "--markdown", type=Path, nargs="*", default=None, help="print the docs table from these files"
    )
    args = ap.parse_args()
    if args.markdown is not None:
        print(markdown(args.markdown, args.domain))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    measure(args.domain, args.policy, args.episodes, args.out, not args.all, args.ids)


if __name__ == "__main__":
    main()
