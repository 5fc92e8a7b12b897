"""Checkpoints: written atomically, so a run killed at any moment resumes from its last one.

A checkpoint is a folder ``checkpoint-000050/`` holding the policy (adapters, critic head and target
critic head: ``Policy.save``) and ``trainer_state.pt`` (optimizer, scheduler, RNG states, step, data
cursor, online round). It is first written under a temporary name and renamed when complete; the
file ``latest`` (itself replaced atomically) names the newest complete checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmq.utils.io import atomic_write_text, fsync_dir

_NAME = re.compile(r"^checkpoint-(\d+)$")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path, step: int, policy: Any, trainer_state: dict[str, Any], keep: int = 2
) -> Path:
    """Write ``checkpoint-{step}`` atomically, point ``latest`` at it, prune old ones."""
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"checkpoint-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-tmp-", dir=run_dir))
    try:
        policy.save(tmp / "policy")
        torch.save({**trainer_state, "rng": rng_state(), "step": step}, tmp / "trainer_state.pt")
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        fsync_dir(run_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(run_dir / "latest", final.name + "\n")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of an interrupted save are ignored)."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(ckpt: Path) -> int:
    """The optimizer step a checkpoint folder (``checkpoint-000050``) was written at."""
    match = _NAME.match(ckpt.name)
    if match is None:
        raise ValueError(f"{ckpt}: not a checkpoint folder name")
    return int(match.group(1))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or ``None``."""
    pointer = run_dir / "latest"
    if pointer.is_file():
        cand = run_dir / pointer.read_text().strip()
        if (cand / "trainer_state.pt").is_file():
            return cand
    ckpts = [c for c in list_checkpoints(run_dir) if (c / "trainer_state.pt").is_file()]
    return ckpts[-1] if ckpts else None


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False)
