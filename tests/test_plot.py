"""Learning-curve plots: several runs in one PNG, a colour per group and a line style per member."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmq.train.plot import _styles, plot_runs


def _run(root: Path, name: str, values: list[float]) -> Path:
    run = root / name
    run.mkdir()
    lines = [json.dumps({"step": 10 * i, "train/actor_loss": v}) for i, v in enumerate(values)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_a_group_shares_a_colour_and_its_members_differ_in_line_style() -> None:
    styles = _styles(["sft", "sft", "afsft", "sft", "afsft"])
    assert [s["color"] for s in styles] == ["C0", "C0", "C1", "C0", "C1"]
    assert [s["linestyle"] for s in styles] == ["-", "--", "-", ":", "--"]


def test_plot_runs_writes_a_png_and_refuses_runs_without_metrics(tmp_path: Path) -> None:
    runs = [_run(tmp_path, f"r{i}", [1.0, 0.5, 0.25 * i]) for i in range(3)]
    out = plot_runs(runs, tmp_path / "c.png", metrics=("train/actor_loss",), groups=["a", "a", "b"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no metrics"):
        plot_runs([empty], tmp_path / "d.png")
