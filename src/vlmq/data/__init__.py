"""Episode data: the schema, atomic Parquet stores, collectors, replay and training batches."""

from vlmq.data.schema import SCHEMA_VERSION, DataError, Episode, Turn
from vlmq.data.store import EpisodeStore, write_dataset

__all__ = ["SCHEMA_VERSION", "DataError", "Episode", "EpisodeStore", "Turn", "write_dataset"]
