"""scripts/blackjack_ceiling.py: random episodes of the real env, and learners scored by exact win rate."""

import importlib.util
from pathlib import Path

import numpy as np

from vlmq.envs.gym_cards.blackjack import action_values

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "blackjack_ceiling.py"


def _load():
    spec = importlib.util.spec_from_file_location("blackjack_ceiling", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_episodes_are_well_formed_and_seeded():
    bc = _load()
    eps = bc.episodes(30, seed=0)
    assert len(eps) == 30 and eps == bc.episodes(30, seed=0) and eps != bc.episodes(30, seed=1)
    for e in eps:
        assert e[-1][3] is None and all(t[3] is not None and t[2] == 0.0 for t in e[:-1])
        assert {t[1] for t in e} <= {0, 1} and e[-1][2] in (-1.0, 0.0, 1.0)


def test_exact_win_rate_of_true_values_is_the_optimum():
    """The learners' state (best total, usable ace, up-card) maps back onto the chart's cells: Q from
    the exact action values scores the optimal 0.4295, a Q that prefers stand 0.3807."""
    bc = _load()

    def true_q(s):
        total, soft, up = s
        return np.array(action_values(total - 10 if soft else total, soft, up))

    assert abs(bc.exact_win_rate(true_q) - 0.4295) < 5e-4
    assert abs(bc.exact_win_rate(lambda s: np.array([1.0, 0.0])) - 0.3807) < 5e-4


def test_additive_q_iteration_beats_always_stand_on_300_episodes():
    bc = _load()
    rate = bc.exact_win_rate(bc.fit(bc.episodes(300, seed=0), "additive", "q-iter"))
    assert rate > 0.395
