"""``vlmq train`` is generated from TrainConfig and AFSFTConfig: one flag per field, the config's
defaults, the docstrings as help; ``--resume`` applies the options a resumed run may change and
refuses the others (vlmq.commands.train)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import vlmq.train.learner as learner_mod
from vlmq.algo.afsft import AFSFTConfig
from vlmq.cli import app
from vlmq.commands.options import first_sentence
from vlmq.commands.train import command
from vlmq.train.config import RANGES, TrainConfig

runner = CliRunner()
# the flags of the hand-written command this one replaced (scripts, README and docs use them)
OLD_FLAGS = [
    "--env", "--model", "--data", "--out", "--filter", "--online", "--steps", "--batch-size",
    "--grad-accum", "--lr", "--lr-schedule", "--gamma", "--beta", "--threshold", "--conservative",
    "--turn-lambda", "--forced-prob", "--critic-coef", "--critic-init-std", "--filter-warmup-steps",
    "--target", "--tau", "--lora-r", "--online-rounds", "--online-episodes", "--online-steps",
    "--num-envs", "--temperature", "--online-mode", "--collectors", "--critic-init-bias", "--dtype",
    "--gradient-checkpointing", "--eval-every", "--eval-episodes", "--checkpoint-every",
    "--max-new-tokens", "--seed", "--device", "--resume", "--quiet",
]  # fmt: skip


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[TrainConfig, bool]]:
    """The configs ``vlmq train`` hands to the learner (which does not run)."""
    calls: list[tuple[TrainConfig, bool]] = []

    def fake(cfg: TrainConfig, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
        calls.append((cfg, resume))
        return {"steps": cfg.total_steps, "wall_time_s": 0.0}

    monkeypatch.setattr(learner_mod, "train", fake)
    return calls


def _flags() -> dict[str, Any]:
    return {opt: p for p in command().params for opt in p.opts}


def test_every_field_has_one_flag_with_help() -> None:
    flags = _flags()
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "loss"]
    names += [f.name for f in dataclasses.fields(AFSFTConfig) if f.name != "extra"]
    for name in names:
        flag = "--" + name.replace("_", "-")
        p = flags.get(flag) or flags[f"--no-{flag[2:]}"]  # a field that defaults to True: --no-NAME
        assert p.help and not p.help.endswith(" ."), name
    assert set(OLD_FLAGS) <= set(flags)
    assert set(RANGES) <= {p.name for p in command().params}


def test_defaults_are_the_configs(random_data: Path, tmp_path: Path, captured: list) -> None:
    args = ["train", "--env", "gym_cards/NumberLine", "--model", "tiny", "--data", str(random_data)]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    cfg = captured[-1][0]
    assert cfg == TrainConfig("gym_cards/NumberLine", "tiny", str(tmp_path / "r"), str(random_data))
    assert (cfg.lora_alpha, cfg.max_new_tokens, cfg.loss.critic_coef) == (32, 24, 10.0)
    r = runner.invoke(app, [*args, "--filter", "none", "--lora-r", "4", "--forced-prob", "off", "--bf16", "on",
                            "--no-eval-sampled", "--cot", "--online-fraction", "0.25"])  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = captured[-1][0]
    assert cfg.out == "runs/gym_cards-NumberLine-none-seed0"
    assert (cfg.loss.filter, cfg.loss.critic_coef, cfg.loss.forced_prob) == ("none", 0.0, None)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.bf16, cfg.eval_sampled, cfg.cot) == (4, 8, True, False, True)
    assert cfg.online_fraction == 0.25
    r = runner.invoke(app, ["train", "--env", "gym_cards/NumberLine", "--model", "tiny", "--online"])
    assert r.exit_code == 0 and captured[-1][0].steps == 0  # no offline steps without offline data


def test_help_lists_fields_with_their_docstrings() -> None:
    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "--turn-lambda" in r.output and "--replay-capacity" in r.output and "--resume" in r.output
    assert first_sentence(":func:`f` is ``x``, e.g. ``y``. Second.") == "f is x, e.g. y."


def test_resume_applies_what_may_change_and_refuses_the_rest(tmp_path: Path, captured: list) -> None:
    run = tmp_path / "run"
    run.mkdir()
    saved = TrainConfig("gym_cards/NumberLine", "tiny", "elsewhere/run", "data", steps=10, lr=1e-3)
    saved.save(run / "config.json")
    r = runner.invoke(
        app, ["train", "--resume", str(run), "--steps", "20", "--eval-every", "5", "--lr", "1e-3"]
    )
    assert r.exit_code == 0, r.output
    cfg, resume = captured[-1]
    assert resume and cfg == dataclasses.replace(saved, out=str(run), steps=20, eval_every=5)
    for extra in (["--lr", "0.1"], ["--gamma", "0.5"], ["--out", str(tmp_path / "other")]):
        r = runner.invoke(app, ["train", "--resume", str(run), *extra])
        assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
        assert r.stderr.startswith(f"error: {extra[0]} ")
    dataclasses.replace(saved, online=True).save(run / "config.json")
    r = runner.invoke(app, ["train", "--resume", str(run), "--steps", "20"])
    assert r.exit_code == 1 and "--steps cannot change when resuming" in r.stderr
    assert len(captured) == 1


def test_learner_refuses_a_changed_config_on_resume(tmp_path: Path) -> None:
    saved = TrainConfig("gym_cards/NumberLine", "tiny", str(tmp_path), "data")
    saved.save(tmp_path / "config.json")
    assert saved.resume_conflicts(dataclasses.replace(saved, steps=500, device="cpu")) == []
    changed = dataclasses.replace(saved, lr=1.0, loss=AFSFTConfig(gamma=0.5))
    assert saved.resume_conflicts(changed) == ["loss", "lr"]
    with pytest.raises(ValueError, match="cannot resume with other loss, lr"):
        learner_mod.Learner(changed, resume=True)


def test_resume_of_a_finished_run_says_so_and_keeps_its_summary(tmp_path: Path, captured: list) -> None:
    run = tmp_path / "run"
    (run / "checkpoint-000010").mkdir(parents=True)
    (run / "checkpoint-000010" / "trainer_state.pt").write_bytes(b"")
    TrainConfig("gym_cards/NumberLine", "tiny", str(run), "data", steps=10).save(run / "config.json")
    (run / "summary.json").write_text('{"wall_time_s": 452.8}')
    r = runner.invoke(app, ["train", "--resume", str(run)])
    assert r.exit_code == 0 and "already trained to step 10 of 10" in r.output, r.output
    assert captured == [] and (run / "summary.json").read_text() == '{"wall_time_s": 452.8}'
    r = runner.invoke(app, ["train", "--resume", str(run), "--steps", "20"])
    assert r.exit_code == 0 and len(captured) == 1  # longer: trains
