"""Compatibility name of :mod:`vlmq.data.batches` (the training-batch loader)."""

from vlmq.data.batches import (
    SAMPLE_COLUMNS,
    BatchLoader,
    OfflineStream,
    TrainBatch,
    TurnSample,
    make_batch,
    samples_from_rows,
)

__all__ = [
    "SAMPLE_COLUMNS",
    "BatchLoader",
    "OfflineStream",
    "TrainBatch",
    "TurnSample",
    "make_batch",
    "samples_from_rows",
]
