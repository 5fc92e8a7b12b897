"""Synthetic scenes of the domains and their captions, the data ``tiny`` is pre-trained on.

:meth:`SceneRenderer.render` renders a real scene with our envs (``reset(seed)`` and a few random valid
steps) and reads the true state from the env object; :func:`scene_captions` turns it into
``(question, caption)`` pairs:

- Gym Cards NumberLine: target / current number (digits 0-9: ``max_position`` 5 or 9);
- Blackjack: the dealer's and the player's cards (rank, suit), face-down card, totals;
- EZPoints / Points24: the cards, their values, the formula shown;
- BabyAI (GoToLocal, PickupLoc, PutNextLocal, GoToDoor, UnlockLocal, Open; partial view): what is
  in front of the agent, the objects in view (colour and kind, each one counted), and reading
  back the mission (text skill);
- every domain: a JSON description (``{"target": 3, "current": 5}``, ``{"cards": [...]}``, ...),
  which is also the held-out evaluation question.

MiniWoB is skipped: its scenes need a headless Chromium per env (seconds to start, hundreds of MB),
too costly for a minutes-long CPU pre-training, and its DOM only exists inside the browser.

Captions never contain actions, action syntax (no ``action`` key, no ``{"action": ...}``) or policy
advice (what to do next); a caption is never a valid action of its domain (``tests/test_pretrain.py``).
Random valid steps only reach varied states; they are not described. Scene seeds live in their own
range (held-out ones in another), away from the seeds used for RL data and evaluation.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmq.utils.progress import progress_bar

DOMAINS: dict[str, float] = {  # domain -> share of training samples
    "numberline": 0.15,
    "blackjack": 0.25,
    "ezpoints": 0.15,
    "points24": 0.2,
    "babyai": 0.25,
}
BABYAI_LEVELS = ("GoToLocal", "PickupLoc", "PutNextLocal", "GoToDoor", "UnlockLocal", "Open")
SUIT_NAMES = {"S": "spades", "H": "hearts", "D": "diamonds", "C": "clubs"}
DESCRIBE_JSON = "Describe the image as JSON."
TRAIN_SEED_BASE = 1_500_000_000  # + (seed % 500) * 1_000_000 + i
HELDOUT_SEED_BASE = 1_400_000_000  # + domain index * 10_000_000 + i, independent of the pre-training seed
NUM_HELDOUT = 500  # held-out scenes per domain for the final report


@dataclass
class Scene:
    """One rendered scene: the env's image and the true state read from the env object."""

    domain: str
    env_id: str
    seed: int
    image: np.ndarray  # HxWx3 uint8
    facts: dict[str, Any] = field(default_factory=dict)


def card_name(rank: int, suit: str) -> str:
    """``"K of spades"`` (the printed rank label and the suit's name)."""
    from vlmq.envs.gym_cards.render import rank_label

    return f"{rank_label(rank)} of {SUIT_NAMES[suit]}"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _babyai_facts(env: Any) -> dict[str, Any]:
    """What the partial view shows: the cell ahead and the (non-wall) objects drawn in the view,
    ``"colour kind"`` each, one entry per object (sorted: listed in reading order instead, the
    captioner learned them more slowly, docs/results.md 8 Dec; the carried one is not in view)."""
    from vlmq.envs.babyai import describe_object

    inner = env.minigrid
    grid, _ = inner.gen_obs_grid()
    me = (grid.width // 2, grid.height - 1)
    seen: list[str] = []
    for i in range(grid.width):
        for j in range(grid.height):
            obj = grid.get(i, j)
            if (i, j) != me and obj is not None and obj.type not in ("wall", "floor", "lava"):
                seen.append(f"{obj.color} {obj.type}")
    ahead = grid.get(me[0], me[1] - 1)
    return {
        "ahead": "an empty cell" if ahead is None else describe_object(ahead),
        "objects": sorted(seen),
        "mission": str(inner.mission),
    }


_COUNT_WORDS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _count_objects(objects: Sequence[str]) -> str:
    """``["red ball", "red ball", "blue key"]`` -> ``"a blue key and two red balls"``."""
    if not objects:
        return "no objects"
    parts = []
    for name, n in sorted(Counter(objects).items()):
        word = _COUNT_WORDS[n] if n < len(_COUNT_WORDS) else str(n)
        parts.append(f"{word} {name}" if n == 1 else f"{word} {name}{'es' if name.endswith('x') else 's'}")
    return _join(parts)


def _env_id(domain: str, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    if domain == "numberline":
        return "gym_cards/NumberLine", {"max_position": int(rng.choice([5, 9]))}
    if domain == "babyai":
        return f"babyai/{BABYAI_LEVELS[int(rng.integers(len(BABYAI_LEVELS)))]}", {}
    return {"blackjack": "gym_cards/Blackjack", "ezpoints": "gym_cards/EZPoints"}.get(
        domain, "gym_cards/Points24"
    ), {}


class SceneRenderer:
    """Renders scenes with cached env objects (one per env id and kwargs)."""

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}

    def _env(self, env_id: str, kwargs: dict[str, Any]) -> Any:
        from vlmq.envs import make

        key = f"{env_id}{sorted(kwargs.items())}"
        if key not in self._envs:
            self._envs[key] = make(env_id, **kwargs)
        return self._envs[key]

    def render(self, domain: str, seed: int) -> Scene:
        """Reset the domain's env with ``seed``, take 0..k random valid steps, read the state."""
        rng = np.random.default_rng(seed)
        env_id, kwargs = _env_id(domain, rng)
        env = self._env(env_id, kwargs)
        obs, _ = env.reset(seed=seed)
        for _ in range(int(rng.integers(0, 9 if domain == "babyai" else 4))):
            obs, _, term, trunc, _ = env.step(env.random_action())
            if term or trunc:
                break
        if domain == "numberline":
            facts: dict[str, Any] = {"target": env.target, "current": env.current}
        elif domain == "blackjack":
            dealer = env.dealer if env.revealed else env.dealer[:1]
            facts = {
                "dealer": [card_name(*c) for c in dealer],  # the visible ones
                "hidden": not env.revealed,
                "player": [card_name(*c) for c in env.player],
                "player_total": env.player_total(),
                "dealer_total": env.dealer_total() if env.revealed else None,  # None: one card hidden
            }
        elif domain in ("ezpoints", "points24"):
            facts = {
                "cards": [card_name(*c) for c in env.cards],
                "values": list(env.values),
                "formula": env.formula_text(),
            }
        else:
            facts = _babyai_facts(env)
        return Scene(domain, env_id, seed, np.asarray(obs["image"], dtype=np.uint8), facts)

    def close(self) -> None:
        for env in self._envs.values():
            with contextlib.suppress(Exception):
                env.close()
        self._envs.clear()


def running_sums(cards: Sequence[str]) -> str:
    """``["K of spades", "3 of hearts", "A of clubs"]`` -> ``"K 10, 3 13, A 14"``: each card's rank and
    the hard total so far (ace = 1), the scratchpad written before a Blackjack total."""
    from vlmq.envs.gym_cards.blackjack import card_value
    from vlmq.envs.gym_cards.render import rank_label

    labels = {rank_label(r): card_value((r, "S")) for r in range(1, 14)}
    parts, hard = [], 0
    for c in cards:
        rank = c.split(" of ")[0]
        hard += labels[rank]
        parts.append(f"{rank} {hard}")
    return ", ".join(parts)


def describe_json(scene: Scene) -> str:
    """The JSON description of a scene (the held-out evaluation caption). Blackjack's totals come
    after the cards, each after its scratchpad of running sums (:func:`running_sums`: read, add one
    card at a time, then count an ace as 11 where that stays <= 21); ``dealer_total`` is ``null``
    (and no scratchpad) while a card is face down."""
    f = scene.facts
    if scene.domain == "numberline":
        obj: dict[str, Any] = {"target": f["target"], "current": f["current"]}
    elif scene.domain == "blackjack":
        obj = {"dealer": f["dealer"] + (["face down"] if f["hidden"] else []), "player": f["player"]}
        if not f["hidden"]:
            obj["dealer_sums"] = running_sums(f["dealer"])
        obj["dealer_total"] = f["dealer_total"]
        obj["player_sums"] = running_sums(f["player"])
        obj["player_total"] = f["player_total"]
    elif scene.domain in ("ezpoints", "points24"):
        obj = {"cards": f["cards"], "formula": f["formula"]}
    else:
        obj = {"ahead": f["ahead"], "objects": f["objects"]}
    return json.dumps(obj)


def scene_captions(scene: Scene) -> list[tuple[str, str]]:
    """All ``(question, caption)`` pairs of a scene (the last one is the JSON description)."""
    f = scene.facts
    qa: list[tuple[str, str]] = []
    if scene.domain == "numberline":
        qa += [
            ("What is the target number?", f"The target number is {f['target']}."),
            ("What is the current number?", f"The current number is {f['current']}."),
            ("What numbers does the image show?", f"The target is {f['target']} and the current number is {f['current']}."),
        ]  # fmt: skip
    elif scene.domain == "blackjack":
        qa.append(
            ("Which cards does the player have?", f"The player has {_join(f['player'])}, a total of {f['player_total']}.")
        )  # fmt: skip
        if f["hidden"]:
            qa.append(
                ("What does the dealer show?", f"The dealer shows {f['dealer'][0]} and one face-down card.")
            )
        else:
            qa.append(
                ("What does the dealer show?", f"The dealer has {_join(f['dealer'])}, a total of {f['dealer_total']}.")
            )  # fmt: skip
        qa.append(("How many cards does the player have?", f"The player has {len(f['player'])} cards."))
    elif scene.domain in ("ezpoints", "points24"):
        formula = f"The formula is {f['formula']}." if f["formula"] else "The formula is empty."
        qa += [
            ("Which cards are shown?", f"The cards are {_join(f['cards'])}."),
            ("What are the values of the cards?", f"The card values are {_join([str(v) for v in f['values']])}."),
            ("What is the current formula?", formula),
        ]  # fmt: skip
    else:
        objects = _count_objects(f["objects"])
        qa += [
            ("What is directly in front of you?", f"In front of you is {f['ahead']}."),
            ("Which objects can you see?", f"I can see {objects}."),
            (f"Mission: {f['mission']}.\nWhat is the mission?", f"The mission is: {f['mission']}."),
        ]
    qa.append((DESCRIBE_JSON, describe_json(scene)))
    return qa


def scene_seeds(n: int, seed: int, domains: Mapping[str, float] | None = None) -> list[tuple[str, int]]:
    """``n`` training ``(domain, env seed)`` pairs: domains drawn with ``domains``' shares
    (default :data:`DOMAINS`)."""
    domains = DOMAINS if domains is None else domains
    rng = np.random.default_rng([seed, 0])
    names = list(domains)
    probs = np.array([domains[d] for d in names], dtype=float)
    picks = rng.choice(len(names), size=n, p=probs / probs.sum())
    base = TRAIN_SEED_BASE + (seed % 500) * 1_000_000
    return [(names[int(k)], base + i) for i, k in enumerate(picks)]


def heldout_seeds(
    n_per_domain: int = NUM_HELDOUT, domains: Sequence[str] | None = None
) -> list[tuple[str, int]]:
    """``n_per_domain`` held-out ``(domain, env seed)`` pairs per domain (default all of :data:`DOMAINS`),
    the same whatever the pre-training seed, disjoint from every training seed; a smaller ``n`` is a
    prefix of a larger one."""
    if not 0 <= n_per_domain <= 10_000_000:
        raise ValueError(f"n_per_domain must be in 0..10_000_000, got {n_per_domain}")
    order = list(DOMAINS)
    return [
        (d, HELDOUT_SEED_BASE + order.index(d) * 10_000_000 + i)
        for d in (order if domains is None else domains)
        for i in range(n_per_domain)
    ]


def render_scenes(
    pairs: Sequence[tuple[str, int]], progress: bool = False, desc: str = "scenes"
) -> list[Scene]:
    """Render ``(domain, seed)`` pairs (deterministic)."""
    renderer = SceneRenderer()
    try:
        return [
            renderer.render(d, s)
            for d, s in progress_bar(pairs, desc=desc, disable=not progress, leave=False)
        ]
    finally:
        renderer.close()
