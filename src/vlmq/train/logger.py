"""Run logs: TensorBoard scalars and text, plus ``metrics.jsonl`` (one JSON object per record).

``metrics.jsonl`` is what ``vlmq plot`` reads; TensorBoard is for people watching a run live.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from vlmq.utils.io import atomic_write_text, read_jsonl

_SECTION = re.compile(r"^## step (\d+) (\S+)$")


class RunLogger:
    """Append-only scalar and text log of one run (main process only)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self._tb: Any = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional at run time)

                self._tb = SummaryWriter(log_dir=str(run_dir / "tb"))
            except ImportError:  # tensorboard is a dependency, but a missing one must not stop training
                self._tb = None

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        clean = {f"{prefix}{k}": float(v) for k, v in values.items() if isinstance(v, int | float)}
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **{k: _finite(v) for k, v in clean.items()}}) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def text(self, step: int, tag: str, lines: list[str]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"## step {step} {tag}\n" + "\n".join(lines) + "\n")
        if self._tb is not None:
            self._tb.add_text(tag, "\n\n".join(f"`{line}`" for line in lines), step)

    def truncate(self, step: int) -> None:
        """Drop what was logged after a checkpoint at ``step`` that a resumed run redoes: records and
        samples of later steps, and online ones of ``step`` itself (collected after the save)."""
        if not self.enabled:
            return
        path = self.run_dir / "metrics.jsonl"
        if path.is_file():
            keep = [r for r in read_metrics(self.run_dir) if _kept(r["step"], r, step)]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
        path = self.run_dir / "samples.txt"
        if path.is_file():
            out, keep = [], True
            for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
                head = _SECTION.match(line)
                if head:  # "## step N tag": a section of sample lines starts
                    keep = _kept(int(head.group(1)), [head.group(2)], step)
                if keep:
                    out.append(line)
            atomic_write_text(path, "".join(out))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _kept(record_step: int, keys: Any, step: int) -> bool:
    return record_step < step or (record_step == step and not any(k.startswith("online/") for k in keys))


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of ``metrics.jsonl`` (a torn last line from a killed run is skipped)."""
    return read_jsonl(run_dir / "metrics.jsonl")
