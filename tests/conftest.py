"""Test-wide settings (no model hub, deterministic torch, quiet libraries) and shared fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

from pathlib import Path

import pytest

_DRIVER = os.environ.get("MINIWOB_CHROMEDRIVER") or "/usr/bin/chromedriver"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``browser`` (MiniWoB++) skip, saying why, where chromium + chromedriver are absent."""
    if os.access(_DRIVER, os.X_OK):
        return
    skip = pytest.mark.skip(
        reason=f"MiniWoB++ needs chromium + chromedriver ({_DRIVER} missing): "
        "apt-get install -y chromium chromium-driver (scripts/install.sh does)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Idefics3 saved as a base model folder."""
    from vlmq.models.tiny import save_tiny

    return save_tiny("idefics3", tmp_path_factory.mktemp("base"), seed=0)


@pytest.fixture(scope="module")
def random_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 random-policy NumberLine episodes."""
    from vlmq.rollout import collect

    out = tmp_path_factory.mktemp("data") / "numberline-random"
    collect(
        "gym_cards/NumberLine", "random", 24, num_envs=2, asynchronous=False, out=out, show_progress=False
    )
    return out
