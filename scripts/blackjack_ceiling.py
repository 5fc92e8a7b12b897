"""What can any learner get out of N random Blackjack episodes? A ceiling for AFSFT's Blackjack target.

Collects ``N`` episodes of the uniformly random policy from the real environment
(``gym_cards/Blackjack``, data seeds 0, 1, ...), fits Q(state, action) on the state features
(player's best total, usable ace, dealer up-card) with three learners and two kinds of target, and
scores each learner's greedy chart with the exact win probability
(:func:`vlmq.envs.gym_cards.blackjack.win_rate`; optimal 0.4295, always stand 0.3807).

Learners: ``table`` (one mean per state and action, no generalisation; unseen: stand), ``additive``
(least squares on one-hot total + ace + up-card per action: values that add up, no interactions),
``mlp`` (one hidden layer of 64, every interaction, Adam). Targets: ``mc`` (the discounted return
of the logged random continuation, the values AFSFT's critic learns with in-turn lambda 1 across
turns) and ``q-iter`` (fitted Q-iteration, ``r + gamma * max_a Q(s', a)``: the values of the
improving policy that bootstrapping from the current policy aims at).

    python scripts/blackjack_ceiling.py                       # 300 and 1,000 episodes, 10 data seeds
    python scripts/blackjack_ceiling.py --episodes 300 --json ceiling.json
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vlmq.envs import make
from vlmq.envs.gym_cards.blackjack import card_value, hand_total, win_rate
from vlmq.utils.io import atomic_write_json

State = tuple[int, bool, int]  # (best total, usable ace, dealer up-card value)
Turn = tuple[State, int, float, State | None]  # (state, action 1 = hit, reward, next state or None)
GAMMA = 0.9


def episodes(n: int, seed: int) -> list[list[Turn]]:
    """``n`` random-policy episodes of the real environment, reset on seeds ``seed * 1e6 + i``."""
    env = make("gym_cards/Blackjack")
    out = []
    for i in range(n):
        env.reset(seed=seed * 1_000_000 + i)
        turns: list[Turn] = []
        done = False
        while not done:
            state = _state(env)
            action = env.random_action()
            _, reward, term, trunc, _ = env.step(action)
            done = term or trunc
            turns.append((state, int(action == "hit"), float(reward), None if done else _state(env)))
        out.append(turns)
    return out


def _state(env: object) -> State:
    total, ace = hand_total([card_value(c) for c in env.player])  # type: ignore[attr-defined]
    return total, ace, card_value(env.dealer[0])  # type: ignore[attr-defined]


def features(s: State) -> np.ndarray:
    """One-hot best total (4..21), usable ace, one-hot up-card (1..10)."""
    x = np.zeros(29, np.float32)
    x[min(max(s[0], 4), 21) - 4] = 1
    x[18] = float(s[1])
    x[19 + s[2] - 1] = 1
    return x


def fit(eps: list[list[Turn]], learner: str, target: str, seed: int = 0) -> Callable[[State], np.ndarray]:
    """Fitted Q per action, as a function of a state."""
    turns = [t for e in eps for t in e]
    x = np.stack([features(s) for s, *_ in turns])
    a = np.array([t[1] for t in turns])
    r = np.array([t[2] for t in turns], np.float32)
    nxt = [t[3] for t in turns]
    returns: list[float] = []
    for e in eps:
        g, back = 0.0, []
        for t in reversed(e):
            g = t[2] + GAMMA * g
            back.append(g)
        returns += back[::-1]
    q = _learner(learner, seed)
    iterations = 1 if target == "mc" else 10
    y = np.array(returns, np.float32)
    for _ in range(iterations):
        if target == "q-iter":
            v = np.array([q(n).max() if n is not None else 0.0 for n in nxt], np.float32)
            y = r + GAMMA * v
        q.fit(x, a, y)  # type: ignore[attr-defined]
    return q


class _Table:
    def __init__(self) -> None:
        self.means: dict[tuple[bytes, int], float] = {}

    def fit(self, x: np.ndarray, a: np.ndarray, y: np.ndarray) -> None:
        sums: dict[tuple[bytes, int], list[float]] = {}
        for xi, ai, yi in zip(x, a, y, strict=True):
            sums.setdefault((xi.tobytes(), int(ai)), []).append(float(yi))
        self.means = {k: float(np.mean(v)) for k, v in sums.items()}

    def __call__(self, s: State) -> np.ndarray:
        key = features(s).tobytes()
        return np.array([self.means.get((key, 0), 0.0), self.means.get((key, 1), -1e9)])


class _Additive:
    def __init__(self, ridge: float = 1e-3) -> None:
        self.w = np.zeros((2, 30), np.float32)
        self.ridge = ridge

    def fit(self, x: np.ndarray, a: np.ndarray, y: np.ndarray) -> None:
        xb = np.concatenate([x, np.ones((len(x), 1), np.float32)], 1)
        for act in (0, 1):
            m = a == act
            gram = xb[m].T @ xb[m] + self.ridge * np.eye(30)
            self.w[act] = np.linalg.solve(gram, xb[m].T @ y[m])

    def __call__(self, s: State) -> np.ndarray:
        return self.w @ np.append(features(s), 1.0)


class _MLP:
    def __init__(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(29, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)

    def fit(self, x: np.ndarray, a: np.ndarray, y: np.ndarray) -> None:
        xt, at, yt = torch.from_numpy(x), torch.from_numpy(a).long(), torch.from_numpy(y)
        for _ in range(400):
            loss = ((self.net(xt).gather(1, at[:, None])[:, 0] - yt) ** 2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()

    @torch.no_grad()
    def __call__(self, s: State) -> np.ndarray:
        return self.net(torch.from_numpy(features(s))).numpy()


def _learner(name: str, seed: int) -> _Table | _Additive | _MLP:
    return {"table": _Table, "additive": _Additive, "mlp": lambda: _MLP(seed)}[name]()  # type: ignore[operator]


def exact_win_rate(q: Callable[[State], np.ndarray]) -> float:
    """Exact win probability of the greedy chart of ``q`` (ties: stand)."""

    def decide(hard: int, ace: bool, up: int) -> str:
        soft = ace and hard + 10 <= 21
        v = q((hard + 10 if soft else hard, soft, up))
        return "hit" if v[1] > v[0] else "stand"

    return win_rate(decide)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--data-seeds", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("episodes  learner   target  exact win rate over data seeds: mean +- std (min..max)")
    for n in args.episodes:
        data = [episodes(n, s) for s in range(args.data_seeds)]
        for learner in ("table", "additive", "mlp"):
            for target in ("mc", "q-iter"):
                rates = [exact_win_rate(fit(d, learner, target, seed=s)) for s, d in enumerate(data)]
                rows.append({"episodes": n, "learner": learner, "target": target, "rates": rates})
                print(f"{n:>8}  {learner:<8}  {target:<6}  {np.mean(rates):.4f} +- {np.std(rates):.4f} "
                      f"({min(rates):.4f}..{max(rates):.4f})", flush=True)  # fmt: skip
    if args.json:
        atomic_write_json(args.json, {"optimal": 0.4295, "always_stand": 0.3807, "rows": rows})


if __name__ == "__main__":
    main()
