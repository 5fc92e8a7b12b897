"""The env catalogue: gymnasium ids, aliases, `vlmq envs [--all]`, and action-text fuzz over every domain."""

from __future__ import annotations

import random
import zlib

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.envs import gym_id, list_envs, listing, make, register, spec
from vlmq.envs.registry import UnknownEnvError

runner = CliRunner()


def test_gymnasium_make_returns_the_vlmq_env() -> None:
    env = gym.make("vlmq/gym_cards.NumberLine", max_turns=3, invalid_penalty=-2.0)
    ref = make("gym_cards/NumberLine", max_turns=3, invalid_penalty=-2.0)
    assert type(env) is type(ref) and env.max_turns == 3 and env.invalid_penalty == -2.0
    a, b = env.reset(seed=5)[0], ref.reset(seed=5)[0]
    assert a["text"] == b["text"] and np.array_equal(a["image"], b["image"])
    assert env.step("+")[1:4] == ref.step("+")[1:4]
    baby = gym.make("vlmq/babyai.GoToSeq", view="full", tile_size=8)
    assert baby.env_id == "babyai/GoToSeq" and baby.view == "full"  # type: ignore[attr-defined]
    assert gym.spec("vlmq/miniwob.click-shape").kwargs == {"vlmq_env_id": "miniwob/click-shape"}


def test_every_env_has_a_gymnasium_id() -> None:
    specs = list_envs()
    assert len(specs) > 200
    for s in specs:
        assert s.gym_id == gym_id(s.env_id) and s.gym_id in gym.registry, s.env_id


def test_aliases_and_unknown_ids() -> None:
    assert spec("miniwob/click-test-v1").env_id == "miniwob/click-test"
    assert spec("babyai/BabyAI-GoToLocal-v0").env_id == "babyai/GoToLocal"
    with pytest.raises(UnknownEnvError, match="did you mean babyai/GoToSeq"):
        spec("babyai/GoToSeqq")
    with pytest.raises(UnknownEnvError, match="vlmq envs miniwob --all"):
        spec("miniwob/nope")
    with pytest.raises(UnknownEnvError, match="domain/Task"):
        spec("GoToSeq")


def test_listing_short_and_all() -> None:
    short, full = listing(), listing(show_all=True)
    assert len(short) < 40 < len(list_envs()) < len(full)
    assert any("more (`vlmq envs babyai --all`)" in line for line in short)
    assert not any("babyai/GoToSeq " in line for line in short)
    seq = next(line for line in full if "babyai/GoToSeq " in line)
    assert "expert" in seq and "Sequencing" in seq
    drag = next(line for line in full if "miniwob/drag-box " in line)
    assert " - " in drag and "unsupported: needs mouse dragging" in drag
    assert full[0].startswith("babyai: ") and "with a scripted expert" in full[0]


def test_cli_envs_all_and_expert_check() -> None:
    result = runner.invoke(app, ["envs", "miniwob", "--all"])
    assert result.exit_code == 0, result.output
    assert "miniwob/click-shape" in result.output and "gym_cards" not in result.output
    assert "miniwob/click-shape" not in runner.invoke(app, ["envs"]).output
    result = runner.invoke(app, ["play", "miniwob/drag-box", "--policy", "expert", "-n", "1"])
    assert result.exit_code == 2 and "no scripted expert" in result.output


# --------------------------------------------------------------------------- fuzz

_FRAGMENTS = [
    "",
    " ",
    "\n",
    "\x00",
    "left",
    "FORWARD!!",
    "pick up",
    "+",
    "-",
    "=",
    "stand",
    "hit",
    "10",
    "(",
    ")",
    "1/0",
    "**",
    "click(",
    "click(ref=1)",
    "click(ref=-1)",
    "click(ref=99999999999999999999)",
    "click(x=1e309, y=nan)",
    "click(x=-5, y=9999)",
    'type(ref=2, text="\\")',
    "type(ref=1, text='')",
    'press("")',
    'press("C-")',
    "press(<Enter>)",
    "press(ctrl+)",
    "press('\\x00')",
    "`click(ref=3)`;",
    "ü😀",
    "\u202e",
    "{}",
    "[]",
    "None",
    "0" * 5000,
]


def fuzz_texts(n: int, seed: int = 0) -> list[str]:
    """Arbitrary action text: fragments glued together, random unicode, very long strings."""
    rng = random.Random(seed)
    out = list(_FRAGMENTS)
    for _ in range(n):
        kind = rng.random()
        if kind < 0.5:
            out.append("".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 4))))
        elif kind < 0.8:
            out.append("".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 40))))
        else:
            out.append(rng.choice(_FRAGMENTS)[:3] * rng.randint(1, 3000))
    return out


def _fuzz(env_id: str, texts: list[str]) -> None:
    env = make(env_id)
    try:
        env.reset(seed=0)
        for text in texts:
            obs, reward, term, trunc, info = env.step(text)
            assert isinstance(obs["text"], str) and np.isfinite(reward) and isinstance(info["valid"], bool)
            if term or trunc:
                env.reset()
    finally:
        env.close()


@pytest.mark.parametrize("env_id", [s.env_id for s in list_envs() if s.domain != "miniwob"])
def test_fuzz_action_text_never_raises(env_id: str) -> None:
    _fuzz(env_id, fuzz_texts(40, seed=zlib.crc32(env_id.encode())))


@pytest.mark.browser
@pytest.mark.parametrize("task", ["click-checkboxes", "enter-text", "click-shape"])
def test_fuzz_miniwob_action_text_never_raises(task: str) -> None:
    _fuzz(f"miniwob/{task}", fuzz_texts(40))


def test_an_env_registered_later_gets_its_gymnasium_id() -> None:
    register("fake/LateGym", lambda **kw: make("gym_cards/NumberLine", **kw), "test env")
    env = gym.make("vlmq/fake.LateGym")
    assert env.unwrapped.env_id == "gym_cards/NumberLine"  # type: ignore[attr-defined]
