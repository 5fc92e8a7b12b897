"""Gym Cards: game rules on hand-built states, the formula evaluator and solver, parsing, seeding
and rendering."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmq.envs import list_envs, make
from vlmq.envs.gym_cards import Blackjack, EZPoints, NumberLine, Points24, render
from vlmq.envs.gym_cards.blackjack import (
    action_values,
    hand_total,
    optimal_action,
    optimal_start_value,
    win_rate,
)
from vlmq.envs.gym_cards.formula import evaluate, solutions, solvable

TASKS = ["gym_cards/NumberLine", "gym_cards/Blackjack", "gym_cards/EZPoints", "gym_cards/Points24"]


def _state(env: object) -> tuple:
    """The game state of a Gym Cards env (for 'unchanged' checks)."""
    if isinstance(env, NumberLine):
        return (env.target, env.current)
    if isinstance(env, Blackjack):
        return (tuple(env.player), tuple(env.dealer), env.revealed)
    assert isinstance(env, EZPoints | Points24)
    return (tuple(env.cards), tuple(env.formula))


def _rigged_blackjack(player: list[int], dealer: list[int], draws: list[int] = ()) -> Blackjack:
    """A Blackjack env with given card ranks (suits: spades) and a fixed sequence of next draws."""
    env = Blackjack()
    env.reset(seed=0)
    env.player = [(r, "S") for r in player]
    env.dealer = [(r, "S") for r in dealer]
    queue = [(r, "S") for r in draws]
    env._draw = lambda: queue.pop(0)  # type: ignore[method-assign]
    return env


def _points(cls: type, ranks: list[int], suit: str = "S") -> EZPoints | Points24:
    env = cls()
    env.reset(seed=0)
    env.cards = [(r, suit) for r in ranks]
    env.formula = []
    return env


# --------------------------------------------------------------------------- registry


def test_registered_and_documented() -> None:
    ids = [s.env_id for s in list_envs("gym_cards")]
    assert ids == sorted([*TASKS, *(f"{t}-text" for t in TASKS)])
    for env_id in TASKS:
        env = make(env_id)
        info = env.task_info()
        assert info.env_id == env_id and info.goal and info.action_doc and info.action_example
        env.reset(seed=0)
        assert env.parse_env(info.action_example) is not None
        for a in env.valid_actions():
            assert env.parse_env(a) is not None, (env_id, a)


def test_text_variants_write_the_state_into_the_observation() -> None:
    for env_id in TASKS:
        plain, text = make(env_id), make(f"{env_id}-text")
        (o1, _), (o2, _) = plain.reset(seed=3), text.reset(seed=3)
        assert (o1["image"] == o2["image"]).all()
        assert len(o2["text"]) > len(o1["text"]), env_id


# --------------------------------------------------------------------------- formula


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2 * 3", Fraction(7)),
        ("( 1 + 2 ) * 3", Fraction(9)),
        ("8 / ( 3 - 8 / 3 )", Fraction(24)),
        ("10 / 4", Fraction(5, 2)),
        ("- 3 + 5", Fraction(2)),
        ("7", Fraction(7)),
    ],
)
def test_evaluate_arithmetic(text: str, value: Fraction) -> None:
    assert evaluate(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "  ", "1 / 0", "3 / ( 2 - 2 )", "3 4", "9(", "2 ** 3", "7 % 2", "abs(-3)", "__import__('os')",
     "x + 1", "1 +", "( 1 + 2", "'12'", "True + 1", "1e400 * 1e400", "1 if 1 else 2", "[1]", "(" * 300 + "1" + ")" * 300,
     "9" * 5000, "1+" * 2000 + "1"],
)  # fmt: skip
def test_evaluate_rejects_junk(text: str) -> None:
    assert evaluate(text) is None


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_evaluate_never_raises(text: str) -> None:
    out = evaluate(text)
    assert out is None or isinstance(out, Fraction)


def test_solutions_are_exact_and_use_every_card() -> None:
    for values, target, ops in [((3, 3, 8, 8), 24, "+-*/"), ((1, 2, 3, 4), 24, "+-*/"), ((2, 6), 12, "+*")]:
        sols = solutions(values, target, ops)
        assert sols
        for sol in sols:
            assert evaluate(" ".join(sol)) == target
            assert Counter(int(t) for t in sol if t.isdigit()) == Counter(values)
            assert set(sol) <= set(ops) | {"(", ")"} | {str(v) for v in values}
    assert solutions((3, 3, 8, 8), 24)[0] == ("8", "/", "(", "3", "-", "8", "/", "3", ")")
    assert not solvable((1, 1, 1, 1), 24)
    assert not solvable((1, 2), 12, "+*")
    assert solvable((10, 2), 12, "+*") and solvable((3, 4), 12, "+*")


# --------------------------------------------------------------------------- NumberLine


def test_numberline_rules() -> None:
    env = NumberLine(max_position=5)
    env.reset(seed=0)
    env.target, env.current = 3, 1
    _, r, term, trunc, info = env.step("+")
    assert (r, term, trunc, env.current) == (0.0, False, False, 2) and info["valid"]
    _, r, term, _, _ = env.step("-")  # away from the target
    assert (r, term, env.current) == (-1.0, False, 1)
    env.step("+")
    _, r, term, _, info = env.step("+")
    assert (r, term, env.current) == (1.0, True, 3)
    assert info["strict_success"] and info["success"] is False  # summed reward 0 - 1 + 0 + 1 = 0
    env.reset(seed=0)
    env.target, env.current = 2, 5
    _, r, _, _, _ = env.step("+")  # pushing against the end: stays put, distance does not shrink
    assert (r, env.current) == (-1.0, 5)
    env.target, env.current = 3, 0
    _, r, _, _, _ = env.step("-")
    assert (r, env.current) == (-1.0, 0)


def test_numberline_start_differs_and_truncates() -> None:
    env = NumberLine(max_position=5)
    for seed in range(200):
        env.reset(seed=seed)
        assert env.current != env.target and 0 <= env.current <= 5 and 0 <= env.target <= 5
    env.reset(seed=1)
    env.target, env.current = 5, 0
    for t in range(1, 11):
        _, _, term, trunc, _ = env.step("-" if t % 2 else "junk")
        assert not term
        assert trunc == (t == 10)


def test_numberline_expert_always_wins() -> None:
    env = NumberLine()
    for seed in range(30):
        env.reset(seed=seed)
        done, info = False, {}
        while not done:
            _, _, term, trunc, info = env.step(env.expert_action())
            done = term or trunc
        assert info["success"] and info["strict_success"]


# --------------------------------------------------------------------------- Blackjack


def test_hand_total() -> None:
    assert hand_total([1, 6]) == (17, True)
    assert hand_total([1, 6, 10]) == (17, False)
    assert hand_total([1, 1, 9]) == (21, True)
    assert hand_total([10, 10, 2]) == (22, False)


@pytest.mark.parametrize(
    ("player", "dealer", "draws", "action", "reward"),
    [
        ([10, 9], [10, 7], [], "stand", 1.0),  # 19 vs 17
        ([10, 8], [13, 8], [], "stand", 0.0),  # draw 18 vs 18
        ([10, 6], [10, 7], [], "stand", -1.0),  # 16 vs 17
        ([10, 10], [10, 6], [5], "stand", -1.0),  # dealer draws to 21
        ([10, 8], [10, 6], [9], "stand", 1.0),  # dealer busts with 25
        ([10, 8], [1, 6], [], "stand", 1.0),  # the dealer stands on soft 17: 18 vs 17
        ([10, 6], [12, 2], [11], "hit", -1.0),  # player busts
    ],
)
def test_blackjack_outcomes(
    player: list[int], dealer: list[int], draws: list[int], action: str, reward: float
) -> None:
    env = _rigged_blackjack(player, dealer, draws)
    n_dealer = len(env.dealer)
    _, r, term, trunc, info = env.step(action)
    assert (r, term, trunc) == (reward, True, False)
    assert info["strict_success"] == (reward > 0) and info["success"] == (reward > 0)
    assert env.revealed
    if dealer == [1, 6]:
        assert len(env.dealer) == n_dealer


def test_blackjack_soft_hand_hit_does_not_bust() -> None:
    env = _rigged_blackjack([1, 6], [10, 7], [10, 4])
    _, r, term, _, _ = env.step("hit")  # A + 6 + 10 = hard 17
    assert (r, term, env.player_total()) == (0.0, False, 17)
    _, r, term, _, _ = env.step("hit")  # 21
    assert (r, term, env.player_total()) == (0.0, False, 21)


def test_blackjack_basic_strategy() -> None:
    ups = [2, 3, 4, 5, 6, 7, 8, 9, 10, 1]

    def row(hand: list[int]) -> str:
        return "".join("H" if optimal_action(hand, up) == "hit" else "S" for up in ups)

    # hit/stand-only basic strategy (infinite deck, dealer stands on soft 17)
    assert row([10, 2]) == "HHSSSHHHHH"
    assert row([10, 6]) == "SSSSSHHHHH"
    assert row([10, 7]) == "SSSSSSSSSS"
    assert row([5, 6]) == "HHHHHHHHHH"
    assert row([1, 7]) == "SSSSSSSHHH"  # soft 18
    assert row([1, 6]) == "HHHHHHHHHH"  # soft 17
    assert optimal_start_value() == pytest.approx(-0.0466, abs=5e-4)
    stand, hit = action_values(20, False, 10)
    assert stand > hit


def test_blackjack_card_back_until_revealed() -> None:
    env = _rigged_blackjack([10, 9], [10, 7])
    env._last_feedback = ""
    img = env._make_obs()["image"]
    blue = (img[..., 2] > 140) & (img[..., 0] < 80)
    assert blue[30:140].sum() > 500  # the hatched back in the dealer row
    img = env.step("stand")[0]["image"]
    blue = (img[..., 2] > 140) & (img[..., 0] < 80)
    assert blue.sum() == 0
    assert tuple(img[2, 298]) == (0x35, 0x65, 0x4D)


# --------------------------------------------------------------------------- Points


def test_ezpoints_rules() -> None:
    env = _points(EZPoints, [2, 13])  # values 2 and 10
    assert env.values == [2, 10]
    _, r, term, _, info = env.step("2")
    assert (r, term, env.formula) == (0.0, False, ["2"]) and info["valid"]
    _, r, term, _, info = env.step("2")  # the only 2 is used: valid but bad, formula unchanged
    assert (r, term, env.formula, info["valid"]) == (-1.0, False, ["2"], True)
    _, r, _, _, info = env.step("7")  # not on the cards
    assert (r, env.formula, info["valid"]) == (-1.0, ["2"], True)
    _, r, _, _, info = env.step("-")  # not an EZPoints action: invalid
    assert (r, env.formula, info["valid"]) == (-1.0, ["2"], False)
    env.step("+")
    env.step("10")
    obs, r, term, _, info = env.step("=")
    assert (r, term) == (10.0, True) and info["strict_success"]
    assert info["episode_return"] == 7.0 and info["success"]  # three -1 penalties, then +10
    assert "Current formula: 2 + 10" in obs["text"]


def test_ezpoints_wrong_and_incomplete() -> None:
    env = _points(EZPoints, [2, 6])
    for a in ["2", "+", "6"]:
        env.step(a)
    _, r, term, _, info = env.step("=")
    assert (r, term, info["strict_success"]) == (-1.0, True, False)
    env = _points(EZPoints, [6, 6])
    for a in ["6", "*", "2"]:
        env.step(a)
    env = _points(EZPoints, [6, 6])
    env.formula = ["6", "+"]
    _, r, term, _, _ = env.step("=")  # malformed
    assert (r, term) == (-1.0, True)


def test_ezpoints_truncates_long_formula() -> None:
    env = _points(EZPoints, [6, 6])
    for t in range(1, 7):
        _, r, term, trunc, _ = env.step("+")
        assert r == 0.0 and not term and trunc == (t == 6)


def test_ezpoints_deals_only_solvable() -> None:
    env = EZPoints()
    for seed in range(100):
        env.reset(seed=seed)
        assert solvable(tuple(env.values), 12, "+*")


def test_points24_rules() -> None:
    env = _points(Points24, [3, 3, 8, 8], suit="H")
    for a in ["8", "/", "(", "3", "-", "8", "/", "3", ")"]:
        assert env.step(a)[1] == 0.0
    _obs, r, term, _, info = env.step("=")
    assert (r, term, info["strict_success"], info["success"]) == (10.0, True, True, True)
    env = _points(Points24, [3, 3, 8, 8])
    for a in ["3", "*", "8"]:
        env.step(a)
    _, r, term, _, info = env.step("=")  # 24, but two cards unused
    assert (r, term) == (-1.0, True) and "every card" in info["feedback"]
    env = _points(Points24, [3, 3, 8, 8])
    env.formula = ["8", "/", "(", "3", "-", "3", ")", "*", "8"]
    _, r, term, _, _ = env.step("=")  # division by zero
    assert (r, term) == (-1.0, True)


def test_points24_face_cards_count_ten() -> None:
    env = _points(Points24, [1, 11, 12, 13])
    assert env.values == [1, 10, 10, 10]
    assert env.valid_actions() == ["1", "10", "+", "-", "*", "/", "(", ")", "="]
    assert env.step("11")[4]["valid"] is False
    assert env.step("10")[1] == 0.0


def test_points_expert() -> None:
    env = _points(Points24, [1, 1, 1, 1])  # unsolvable: submit at once
    assert env.expert_action() == "="
    env = _points(Points24, [3, 3, 8, 8])
    seq = []
    while True:
        a = env.expert_action()
        seq.append(a)
        _, r, term, trunc, _ = env.step(a)
        if term or trunc:
            break
    assert seq == ["8", "/", "(", "3", "-", "8", "/", "3", ")", "="] and r == 10.0
    env = _points(Points24, [3, 3, 8, 8])
    env.formula = ["8", "/", "(", "3", "-", "("]  # follows the fully parenthesised spelling from this prefix
    assert env.expert_action() == "8"
    env.formula = ["3", "3"]  # hopeless prefix
    assert env.expert_action() == "="


def test_points24_expert_success_equals_solvable_fraction() -> None:
    env = Points24()
    wins = solvable_hands = 0
    for seed in range(60):
        env.reset(seed=seed)
        solvable_hands += solvable(tuple(env.values), 24)
        done, info = False, {}
        while not done:
            _, _, term, trunc, info = env.step(env.expert_action())
            done = term or trunc
        wins += info["strict_success"]
    assert wins == solvable_hands and 0 < wins < 60


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("env_id", "text", "parsed"),
    [
        ("gym_cards/Blackjack", "Hit", "hit"),
        ("gym_cards/Blackjack", "  STAND \n", "stand"),
        ("gym_cards/Blackjack", '"hit"', "hit"),
        ("gym_cards/Blackjack", "hit me", None),
        ("gym_cards/Blackjack", "", None),
        ("gym_cards/NumberLine", " + ", "+"),
        ("gym_cards/NumberLine", "\u2212", "-"),
        ("gym_cards/NumberLine", "+1", None),
        ("gym_cards/NumberLine", "++", None),
        ("gym_cards/EZPoints", " 10 ", "10"),
        ("gym_cards/EZPoints", "*", "*"),
        ("gym_cards/EZPoints", "\u00d7", "*"),
        ("gym_cards/EZPoints", "/", None),
        ("gym_cards/EZPoints", "11", None),
        ("gym_cards/EZPoints", "0", None),
        ("gym_cards/EZPoints", "01", None),
        ("gym_cards/Points24", "(", "("),
        ("gym_cards/Points24", "=", "="),
        ("gym_cards/Points24", "\u00f7", "/"),
        ("gym_cards/Points24", "\u0663", None),  # Arabic-Indic digit three
        ("gym_cards/Points24", "1 0", None),
    ],
)
def test_parse_env(env_id: str, text: str, parsed: str | None) -> None:
    env = make(env_id)
    env.reset(seed=0)
    assert env.parse_env(text) == parsed


@pytest.fixture(scope="module")
def envs() -> dict[str, object]:
    return {env_id: make(env_id, max_turns=None) for env_id in TASKS}


@given(env_id=st.sampled_from(TASKS), text=st.text(max_size=20), seed=st.integers(0, 50))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_step_never_raises_and_invalid_is_inert(envs: dict, env_id: str, text: str, seed: int) -> None:
    env = envs[env_id]
    env.reset(seed=seed)
    before = _state(env)
    image_before = env.render().copy()
    _, r, term, trunc, info = env.step(text)
    if env.parse_env(text) is None:
        assert info["valid"] is False and r == -1.0 and not term and not trunc
        assert _state(env) == before
        assert np.array_equal(env.render(), image_before)
        assert "Invalid action" in info["feedback"]
    else:
        assert info["valid"] is True


# --------------------------------------------------------------------------- seeding


def _fingerprint(env_id: str, seed: int, steps: int = 3) -> str:
    env = make(env_id)
    obs, _ = env.reset(seed=seed)
    h = hashlib.sha256(obs["image"].tobytes() + obs["text"].encode())
    for _ in range(steps):
        obs, r, term, trunc, _ = env.step(env.random_action())
        h.update(obs["image"].tobytes() + obs["text"].encode() + str(r).encode())
        if term or trunc:
            break
    return h.hexdigest()


@pytest.mark.parametrize("env_id", TASKS)
def test_seed_reproducible(env_id: str) -> None:
    assert _fingerprint(env_id, 7) == _fingerprint(env_id, 7)
    assert len({_fingerprint(env_id, s, steps=0) for s in range(8)}) > 1


def test_seed_reproducible_across_processes() -> None:
    code = (
        "from tests.test_gym_cards import _fingerprint, TASKS\n"
        "print(' '.join(_fingerprint(e, s) for e in TASKS for s in (0, 11)))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, cwd=root
    )
    assert out.stdout.split() == [_fingerprint(e, s) for e in TASKS for s in (0, 11)]


# --------------------------------------------------------------------------- rendering


def _red(img: np.ndarray) -> int:
    return int(((img[..., 0] > 150) & (img[..., 1] < 60) & (img[..., 2] < 60)).sum())


@pytest.mark.parametrize("env_id", TASKS)
def test_render_shape(env_id: str) -> None:
    env = make(env_id)
    obs, _ = env.reset(seed=3)
    img = obs["image"]
    assert img.shape == (300, 300, 3) and img.dtype == np.uint8 and img.flags["C_CONTIGUOUS"]
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 2
    assert np.array_equal(env.render(), img)


def test_heart_is_red_spade_is_black() -> None:
    hearts = _points(Points24, [1, 5, 12, 13], suit="H")
    spades = _points(Points24, [1, 5, 12, 13], suit="S")
    assert _red(hearts._make_obs()["image"]) > 300
    assert _red(spades._make_obs()["image"]) == 0


def test_formula_is_drawn() -> None:
    env = _points(Points24, [3, 3, 8, 8])
    empty = env._make_obs()["image"]
    for a in ["8", "/", "(", "3", "-", "8", "/", "3", ")"]:
        img = env.step(a)[0]["image"]
    assert not np.array_equal(empty[200:], img[200:])
    long = _points(Points24, [3, 3, 8, 8])
    long.formula = [
        "(",
        "(",
        "(",
        "3",
        "+",
        "3",
        ")",
        "*",
        "(",
        "8",
        "-",
        "8",
        ")",
        "+",
        "(",
        "3",
        "/",
        "8",
        ")",
        ")",
        ")",
    ]
    assert long._make_obs()["image"].shape == (300, 300, 3)


@pytest.fixture
def no_fonts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("no font")

    monkeypatch.setattr(render.ImageFont, "truetype", fail)
    render.clear_caches()
    yield
    monkeypatch.undo()
    render.clear_caches()


def test_font_fallback(no_fonts: None) -> None:
    assert not render.has_suit_glyphs()
    for env_id in TASKS:
        env = make(env_id)
        img = env.reset(seed=2)[0]["image"]
        assert img.shape == (300, 300, 3) and img.std() > 10
    hearts = _points(Points24, [1, 5, 12, 13], suit="H")
    assert _red(hearts._make_obs()["image"]) > 300  # suit shapes are drawn without a font


def test_matplotlib_font_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    real = render.ImageFont.truetype

    def only_paths(font: object, *args: object, **kwargs: object) -> object:
        if isinstance(font, str) and "/" not in font:
            raise OSError("no system font")
        return real(font, *args, **kwargs)

    monkeypatch.setattr(render.ImageFont, "truetype", only_paths)
    render.clear_caches()
    try:
        assert render.has_suit_glyphs()  # found matplotlib's bundled DejaVu
        assert make("gym_cards/Blackjack").reset(seed=0)[0]["image"].std() > 10
    finally:
        monkeypatch.undo()
        render.clear_caches()


# --------------------------------------------------------------------------- policies


@pytest.mark.parametrize("env_id", TASKS)
def test_expert_beats_random(env_id: str) -> None:
    def mean_return(policy: str, n: int) -> float:
        env = make(env_id)
        total = 0.0
        for seed in range(n):
            env.reset(seed=seed)
            done = False
            while not done:
                _, r, term, trunc, _ = env.step(env.scripted_action(policy, 0.2))
                total += r
                done = term or trunc
        return total / n

    n = 200 if env_id == "gym_cards/Blackjack" else 40
    assert mean_return("expert", n) > mean_return("random", n)
    assert mean_return("expert", n) >= mean_return("noisy", n) - 0.05


def test_blackjack_exact_win_rate() -> None:
    """The episode-free win rate of a decision table agrees with simulation and orders policies."""
    opt = win_rate(
        lambda hard, ace, up: (
            "hit" if action_values(hard, ace, up)[1] > action_values(hard, ace, up)[0] + 1e-12 else "stand"
        )
    )
    stand = win_rate(lambda hard, ace, up: "stand")
    invalid = win_rate(lambda hard, ace, up: "fold")
    assert opt == pytest.approx(0.4295, abs=5e-4)
    assert stand == pytest.approx(0.3807, abs=5e-4)
    assert invalid == 0.0
    env = make("gym_cards/Blackjack")
    wins = 0
    for seed in range(4000):
        env.reset(seed=seed)
        while True:
            _, reward, terminated, truncated, _ = env.step("stand")
            if terminated or truncated:
                wins += reward > 0
                break
    assert wins / 4000 == pytest.approx(stand, abs=0.025)
