"""A trained policy's Blackjack strategy chart and its exact win rate (no episode noise).

Asks the policy (greedy) for its action on one representative hand per (hard total, holds an ace,
dealer up-card) with the state in the text (``gym_cards/Blackjack-text``), prints the chart next to
the optimal one, and scores the chart with :func:`vlmq.envs.gym_cards.blackjack.win_rate`, the exact
win probability of those decisions. 100 evaluation episodes leave about +-5 points of noise and 1,000
about +-1.5; this number has none (the policy may still decide differently on other hands with the
same totals, which the chart does not see).

With ``--critic`` it also prints the critic's chart: per cell the action whose Q-value is higher at the
first response token where "hit" and "stand" differ (the decision token), and that chart's exact win
rate - what the binary filter could reach if the actor followed the critic. A critic chart near the
optimum with an actor chart near always-stand points at the actor; both near always-stand at the critic.

    python scripts/blackjack_policy.py runs/bj-afsft-seed0            # a run folder or a policy folder
    python scripts/blackjack_policy.py runs/bj-afsft-seed0 --json chart.json
    python scripts/blackjack_policy.py runs/bj-afsft-seed0/checkpoints/step_1000 --critic
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vlmq.envs import make
from vlmq.envs.gym_cards.blackjack import action_values, optimal_action, win_rate
from vlmq.models.policy import Policy
from vlmq.models.prompts import build_prompt
from vlmq.rollout import parse_agent
from vlmq.train.checkpoint import latest_checkpoint
from vlmq.train.ranking import Probe, decision_gaps
from vlmq.utils.io import atomic_write_json

UPS = range(1, 11)


def hand(hard: int, ace: bool) -> list[int] | None:
    """Card values (ace = 1) of one hand with this hard total, or None if there is none."""
    if ace:
        rest = hard - 1
        if 1 <= rest <= 10:
            return [1, rest]
        return [1, 10, rest - 10] if 2 <= rest - 10 <= 10 else None
    if hard < 4:
        return None
    if hard <= 20:
        first = min(10, hard - 2)
        return [first, hard - first]
    return [10, 9, hard - 19]


Cell = tuple[int, bool, int]


def scenes() -> tuple[list[Cell], list, list[str]]:
    """One hand per chart cell: its key (hard, ace, up), image and prompt."""
    env = make("gym_cards/Blackjack-text")
    env.reset(seed=0)
    task = env.task_info()
    keys, images, prompts = [], [], []
    for hard in range(2, 22):
        for ace in (False, True):
            values = hand(hard, ace)
            if values is None:
                continue
            for up in UPS:
                env.player = [(v, "S") for v in values]
                env.dealer = [(up, "H"), (5, "C")]
                env.revealed = False
                image, text = env._observe()
                keys.append((hard, ace, up))
                images.append(image)
                prompts.append(build_prompt(task, text))
    return keys, images, prompts


def chart(policy: Policy, max_new_tokens: int = 24, batch: int = 32) -> dict[Cell, str]:
    """The policy's greedy action ("hit", "stand" or "invalid") per (hard, ace, up)."""
    keys, images, prompts = scenes()
    out: dict[Cell, str] = {}
    for i in range(0, len(keys), batch):
        gens = policy.generate(
            images[i : i + batch], prompts[i : i + batch], temperature=0.0, max_new_tokens=max_new_tokens
        )
        for key, g in zip(keys[i : i + batch], gens, strict=True):
            out[key] = parse_agent(g.text) or "invalid"
    return out


def critic_chart(policy: Policy) -> dict[Cell, float]:
    """``Q(hit) - Q(stand)`` of the critic at the decision token, per (hard, ace, up)."""
    keys, images, prompts = scenes()
    probes = [Probe(im, pr, "hit", ["stand"]) for im, pr in zip(images, prompts, strict=True)]
    return {key: row[0] for key, row in zip(keys, decision_gaps(policy, probes, batch_size=32), strict=True)}  # type: ignore[misc]


def print_chart(table: dict[Cell, str], title: str) -> float:
    """Print ``table`` beside the optimal chart; return its exact win rate."""

    def decide(hard: int, ace: bool, up: int) -> str:
        return table.get((hard, ace, up)) or optimal_action([1] * ace + [hard - ace], up)

    rate = win_rate(decide)
    wrong = [k for k, a in table.items() if a != optimal_action([1] * k[1] + [k[0] - k[1]], k[2])]
    print(f"total  {title:<26}optimal")
    for hard in range(2, 22):
        for ace in (False, True):
            if (hard, ace, 1) not in table:
                continue
            row = "".join({"hit": "H", "stand": "S"}.get(table[(hard, ace, up)], "?") for up in UPS)
            best = "".join(
                "H" if optimal_action([1] * ace + [hard - ace], up) == "hit" else "S" for up in UPS
            )
            print(f"{('A' if ace else ' ') + str(hard):>5}  {row}                 {best}")
    print(f"exact win rate {rate:.4f} (optimal {win_rate(lambda h, a, u: optimal_action([1] * a + [h - a], u)):.4f}, "
          f"always stand {win_rate(lambda h, a, u: 'stand'):.4f}); {len(wrong)} of {len(table)} cells differ "
          f"from the optimum, {sum(a == 'invalid' for a in table.values())} invalid")  # fmt: skip
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="run folder (its last checkpoint) or saved policy folder")
    ap.add_argument("--json", type=Path, help="also write the chart and rates here")
    ap.add_argument("--critic", action="store_true", help="also print the critic's chart (argmax Q)")
    args = ap.parse_args()
    path = Path(args.model)
    ckpt = latest_checkpoint(path) if path.is_dir() else None
    policy = Policy.from_pretrained(str(ckpt / "policy") if ckpt else args.model)
    table = chart(policy)
    rate = print_chart(table, "policy (dealer A 2..10)")
    critic = None
    if args.critic:
        gaps = critic_chart(policy)
        critic = print_chart({k: "hit" if g > 0 else "stand" for k, g in gaps.items()}, "critic argmax Q")
        by_total = {h: [g for (hh, a, _), g in gaps.items() if hh == h and not a] for h in range(4, 21)}
        print("Q(hit) - Q(stand), hard hands, mean over up-cards:",
              " ".join(f"{h}:{sum(v) / len(v):+.2f}" for h, v in by_total.items() if v))  # fmt: skip
    if args.json:
        gaps = {k: abs(action_values(*k)[1] - action_values(*k)[0]) for k in table}
        rows = [
            {"hard": h, "ace": a, "up": u, "action": table[(h, a, u)], "value_gap": gaps[(h, a, u)]}
            for h, a, u in table
        ]
        atomic_write_json(
            args.json,
            {"model": args.model, "exact_win_rate": rate, "critic_exact_win_rate": critic, "chart": rows},
        )


if __name__ == "__main__":
    main()
