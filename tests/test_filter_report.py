"""`vlmq filter-report`: which logged tokens pass the AFSFT filter, position by position."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from vlmq.algo.afsft import AFSFTConfig
from vlmq.cli import app
from vlmq.models.policy import Policy
from vlmq.train.filter_report import filter_report, format_report, sample_turns


def test_a_fresh_critic_passes_everything_and_a_low_end_token_is_dropped(
    tiny_base: Path, random_data: Path
) -> None:
    policy = Policy.from_pretrained(tiny_base)
    samples = sample_turns(str(random_data), 12, seed=1)
    assert len(samples) == 12 and sample_turns(str(random_data), 12, seed=1)[0].where == samples[0].where
    fresh = filter_report(policy, samples, AFSFTConfig(filter="binary"), batch_size=5)
    assert [r.position for r in fresh] == list(range(len(fresh))) and fresh[0].tokens == 12
    assert all(r.pass_frac == 1.0 and r.adv_mean == 0.0 for r in fresh)  # a flat critic: ties pass
    assert "{" in fresh[0].top[0][0]  # NumberLine answers start with `{"action": ...`
    # the critic now rates the end-of-turn token below every other token: it never passes
    with torch.no_grad():
        policy.critic_head.bias[policy.eot_token_id] -= 1.0
    low = filter_report(policy, samples, AFSFTConfig(filter="binary"))
    last = low[-1]
    assert last.top[0][0] == policy.tokenizer.decode([policy.eot_token_id])
    assert last.pass_frac == 0.0 and last.adv_mean < 0
    assert all(r.pass_frac == 1.0 for r in low[:-1])
    # with the filter off every token passes (SFT)
    assert all(r.pass_frac == 1.0 for r in filter_report(policy, samples, AFSFTConfig(filter="none")))
    table = format_report(low)
    assert table.splitlines()[0].startswith("pos") and len(table.splitlines()) == len(low) + 1


def test_cli(tmp_path: Path, tiny_base: Path, random_data: Path) -> None:
    policy = Policy.from_pretrained(tiny_base)
    policy.save(tmp_path / "policy")
    runner = CliRunner()
    r = runner.invoke(
        app, ["filter-report", str(tmp_path / "policy"), "--data", str(random_data), "--turns", "6"]
    )
    assert r.exit_code == 0, r.output
    assert "6 turns of" in r.output and "filter binary" in r.output and "pos  tokens  pass" in r.output
    assert "ranking accuracy" not in r.output  # a bare policy names no task
    args = ["filter-report", str(tmp_path / "policy"), "--data", str(random_data), "--turns", "2"]
    r = runner.invoke(app, [*args, "--env", "gym_cards/NumberLine"])
    assert r.exit_code == 0, r.output
    # a zero-weight critic head scores every token alike: chance, and the warning says so
    assert "ranking accuracy on 64 held-out states of gym_cards/NumberLine: 0.500 (chance 0." in r.output
    assert "at chance" in r.output
    r = runner.invoke(app, [*args, "--env", "gym_cards/Nope"])
    assert r.exit_code == 2 and "unknown env" in r.output and "vlmq envs" in r.output
    r = runner.invoke(app, ["filter-report", str(tmp_path / "policy")])
    assert r.exit_code == 1 and "give --data" in r.output
    r = runner.invoke(app, ["filter-report", str(tmp_path / "policy"), "--data", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "no such dataset" in r.output
