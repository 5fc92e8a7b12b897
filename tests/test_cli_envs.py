"""`vlmq envs` and `vlmq play`, and the play() function behind them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.rollout import RolloutStats, play

runner = CliRunner()


def test_envs_lists_gym_cards() -> None:
    result = runner.invoke(app, ["envs"])
    assert result.exit_code == 0, result.output
    assert "gym_cards:" in result.output
    for task in ["NumberLine", "Blackjack", "EZPoints", "Points24"]:
        assert f"gym_cards/{task}" in result.output
    result = runner.invoke(app, ["envs", "gym_cards"])
    assert result.exit_code == 0 and "gym_cards/Points24" in result.output


def test_play_smoke() -> None:
    result = runner.invoke(app, ["play", "gym_cards/NumberLine", "--policy", "expert", "--episodes", "5"])
    assert result.exit_code == 0, result.output
    assert "success rate" in result.output and "100.0 %" in result.output
    assert "valid-action rate" in result.output and "mean return" in result.output
    result = runner.invoke(
        app, ["play", "gym_cards/Blackjack", "--policy", "noisy", "--episodes", "5", "--epsilon", "0.5"]
    )
    assert result.exit_code == 0, result.output


def test_play_save_frames(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    result = runner.invoke(
        app, ["play", "gym_cards/EZPoints", "--episodes", "5", "--seed", "3", "--save-frames", str(out)]
    )
    assert result.exit_code == 0, result.output
    frames = sorted(p.name for p in out.glob("frame_*.png"))
    assert frames[0] == "frame_000.png" and len(frames) == 5  # reset + "a", "op", "b", "="
    log = (out / "episode.txt").read_text(encoding="utf-8")
    assert "Current formula" in log and "action: '='" in log


@pytest.mark.parametrize(
    "args",
    [["play", "gym_cards/Nope"], ["play", "nodomain"], ["play", "gym_cards/NumberLine", "--policy", "smart"]],
)
def test_play_bad_arguments(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2


def test_play_function() -> None:
    stats = play("gym_cards/EZPoints", "expert", episodes=10, seed=0)
    assert isinstance(stats, RolloutStats)
    assert stats.success_rate == 1.0 and stats.strict_success_rate == 1.0 and stats.mean_return == 10.0
    assert stats.valid_rate == 1.0 and stats.mean_length == 4.0 and stats.steps == 40
    assert stats.steps_per_s > 0
    assert play("gym_cards/EZPoints", "random", episodes=10, seed=0).success_rate < 1.0
    with pytest.raises(ValueError):
        play("gym_cards/EZPoints", "smart")
