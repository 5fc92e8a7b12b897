"""`vlmq reproduce --quick`: the comparison runs end to end and writes its table (not its numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.experiments.reproduce import CONDITIONS, ReproduceConfig, aggregate, format_table


def test_aggregate_and_table() -> None:
    agg = aggregate([{"success_rate": 0.5, "mean_return": 1.0, "valid_rate": 1.0},
                     {"success_rate": 1.0, "mean_return": 3.0, "valid_rate": 0.5}])  # fmt: skip
    assert agg["success_rate"] == 0.75 and agg["success_rate_std"] == 0.25 and agg["mean_return"] == 2.0
    cond = {c: agg for c in ("expert", *CONDITIONS)}
    data = {"random": agg, "noisy": agg}
    config = {"seeds": [0, 1], "eval_episodes": 7, "tasks": ["x/Y", "a/B"]}
    results = {"config": config, "tasks": {"x/Y": {"conditions": cond, "data": data, "seeds": [0, 1]}}}
    table = format_table(results)
    assert "| x/Y | 2 | 75 / 75 | 75 ± 25 (75) |" in table and "7 evaluation episodes" in table
    assert table.count("|---") == 2 * (3 + len(cond))  # success and return tables
    assert "| x/Y | 2 | 2.00 / 2.00 | 2.00 ± 1.00 |" in table and "a/B" not in table


def test_offline_result_needs_an_evaluation_at_the_end_of_the_offline_phase(tmp_path: Path) -> None:
    from vlmq.experiments.reproduce import reproduce

    with pytest.raises(ValueError, match="multiple of eval_every"):
        reproduce(ReproduceConfig.quick(out=str(tmp_path), steps=5, eval_every=2))
    with pytest.raises(ValueError, match="jobs must be"):
        reproduce(ReproduceConfig.quick(out=str(tmp_path)), jobs=0)


@pytest.mark.slow
@pytest.mark.browser
def test_reproduce_quick_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    # two (task, seed) units at a time in worker processes; the second call below runs in-process
    r = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out), "--jobs", "2"])
    assert r.exit_code == 0, r.output
    assert "3 (task, seed) units on 2 workers" in r.output
    results = json.loads((out / "results.json").read_text())
    tasks = ReproduceConfig.quick().tasks
    assert sorted(results["tasks"]) == sorted(tasks)
    for task in tasks:
        conds = results["tasks"][task]["conditions"]
        assert set(conds) == {"expert", *CONDITIONS}
        for m in conds.values():
            assert m["seeds"] == 1 and 0.0 <= m["success_rate"] <= 1.0 and 0.0 <= m["valid_rate"] <= 1.0
        assert (out / "curves" / f"{task.replace('/', '-')}.png").is_file()
        online = json.loads(
            (out / "runs" / task.replace("/", "-") / "afsft-online-seed0" / "summary.json").read_text()
        )
        assert online["online"] and online["steps"] == 4 + 2  # offline steps + one online round
    table = (out / "results.md").read_text()
    rows = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()]
    assert [t for t in rows if t in tasks] == tasks * 2  # in the configured order, in both tables
    assert table in r.output
    # a second call finds everything done and only rewrites the table
    r2 = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out)])
    assert r2.exit_code == 0 and "training" not in r2.output
    # --report: tables from finished seeds only (a task whose run is unfinished drops out)
    (out / "runs" / "miniwob-click-button" / "sft-noisy-seed0" / "summary.json").unlink()
    r3 = CliRunner().invoke(app, ["reproduce", "--quick", "--report", "--out", str(out)])
    assert r3.exit_code == 0 and "| gym_cards/NumberLine | 1 |" in r3.output
    assert "miniwob/click-button" not in r3.output
