"""Episode data: the schema, atomic Parquet stores, replay, mixtures and training batches (episodes
are run by :mod:`vlmq.rollout`).

The schema and the store import eagerly (light); the rest loads on first use, so that reading a
dataset never imports torch or the environments.
"""

from __future__ import annotations

import importlib
from typing import Any

from vlmq.data.schema import SCHEMA_VERSION, DataError, Episode, Turn
from vlmq.data.store import EpisodeStore, write_dataset

_LAZY = {
    "OfflineStream": "vlmq.data.batches",
    "TrainBatch": "vlmq.data.batches",
    "make_batch": "vlmq.data.batches",
    "ReplayStore": "vlmq.data.replay",
    "merge": "vlmq.data.mix",
    "filter_episodes": "vlmq.data.mix",
    "sample_mixture": "vlmq.data.mix",
    "sample_by_source": "vlmq.data.mix",
    "summarize": "vlmq.data.info",
}

__all__ = ["SCHEMA_VERSION", "DataError", "Episode", "EpisodeStore", "Turn", "write_dataset", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vlmq.data' has no attribute {name!r}")
