"""The episode schema: one row per turn, images as PNG bytes, a schema version (:data:`SCHEMA_VERSION`).

Datasets are model-agnostic: ``prompt`` is the user message of :func:`vlmq.models.prompts.build_prompt`
and ``response`` the raw text the agent wrote; tokenisation happens at training time, per model.
A model-written turn also keeps the token ids it sampled (``response_ids``) and whether it emitted a
stop token (``response_finished``): re-tokenising decoded text need not give the sampled ids back, and
a cut-off generation must not be trained as if closed. Both are null for scripted turns and are
*optional columns*: shards written before them load with nulls (same schema version).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

SCHEMA_VERSION = 1


class DataError(ValueError):
    """A dataset problem, with a one-line message naming the file and what is wrong."""


def features() -> Any:
    """The ``datasets.Features`` of a turn row."""
    from datasets import Features, List, Value

    return Features(
        {
            "schema_version": Value("int32"),
            "episode_id": Value("string"),
            "turn": Value("int32"),
            "env_id": Value("string"),
            "source": Value("string"),
            "seed": Value("int64"),
            "image": Value("binary"),
            "obs_text": Value("string"),
            "prompt": Value("string"),
            "response": Value("string"),
            "action": Value("string"),
            "valid": Value("bool"),
            "reward": Value("float32"),
            "terminated": Value("bool"),
            "truncated": Value("bool"),
            "success": Value("bool"),
            "strict_success": Value("bool"),
            "episode_return": Value("float32"),
            "final_image": Value("binary"),
            "final_prompt": Value("string"),
            "response_ids": List(Value("int32")),
            "response_finished": Value("bool"),
        }
    )


_ARROW_SCHEMA: Any = None


def arrow_schema() -> Any:
    """The ``pyarrow`` schema of a shard: :func:`features` plus ``vlmq.schema_version`` metadata."""
    global _ARROW_SCHEMA
    if _ARROW_SCHEMA is None:
        schema = features().arrow_schema
        meta = dict(schema.metadata or {})
        meta[b"vlmq.schema_version"] = str(SCHEMA_VERSION).encode()
        _ARROW_SCHEMA = schema.with_metadata(meta)
    return _ARROW_SCHEMA


def check_schema(schema: Any, where: str) -> None:
    """Raise a :class:`DataError` naming ``where`` unless ``schema`` (pyarrow) is this version's schema."""
    meta = schema.metadata or {}
    version = meta.get(b"vlmq.schema_version")
    if version is not None and version != str(SCHEMA_VERSION).encode():
        raise DataError(
            f"{where}: schema version {version.decode(errors='replace')}, "
            f"this vlmq reads version {SCHEMA_VERSION}"
        )
    expected = arrow_schema()
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise DataError(f"{where}: not a vlmq episode shard (missing columns {', '.join(missing)})")
    wrong = [
        f"{c} is {schema.field(c).type}, expected {expected.field(c).type}"
        for c in COLUMNS
        if c in schema.names and not schema.field(c).type.equals(expected.field(c).type)
    ]
    if wrong:
        raise DataError(f"{where}: wrong column types ({'; '.join(wrong)})")


REQUIRED_COLUMNS: tuple[str, ...] = (
    "schema_version", "episode_id", "turn", "env_id", "source", "seed", "image", "obs_text", "prompt",
    "response", "action", "valid", "reward", "terminated", "truncated", "success", "strict_success",
    "episode_return", "final_image", "final_prompt",
)  # fmt: skip
OPTIONAL_COLUMNS: tuple[str, ...] = ("response_ids", "response_finished")
"""Columns added after version 1 was released: a shard without them reads them as nulls."""
COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def encode_png(image: np.ndarray) -> bytes:
    """uint8 ``HxWx3`` array -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes, where: str = "image") -> np.ndarray:
    """PNG bytes -> uint8 ``HxWx3`` array; a :class:`DataError` naming ``where`` if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise DataError(f"{where}: image does not decode ({type(exc).__name__}: {exc})") from None


@dataclass
class Turn:
    """One agent turn: what it saw, what it wrote, what happened.

    ``response_ids``: the token ids a model sampled (incl. its stop token when it emitted one, then
    ``response_finished``), ``None`` for a scripted turn (trained as its text + end-of-turn token).
    """

    image: np.ndarray
    obs_text: str
    prompt: str
    response: str
    action: str | None
    valid: bool
    reward: float
    terminated: bool = False
    truncated: bool = False
    response_ids: list[int] | None = None
    response_finished: bool | None = None


@dataclass
class Episode:
    """A whole episode; ``final_image``/``final_prompt`` is the observation after the last step."""

    episode_id: str
    env_id: str
    source: str
    seed: int
    turns: list[Turn] = field(default_factory=list)
    final_image: np.ndarray | None = None
    final_prompt: str | None = None
    success: bool = False
    strict_success: bool = False

    @property
    def episode_return(self) -> float:
        return float(sum(t.reward for t in self.turns))

    def rows(self) -> list[dict[str, Any]]:
        """The episode as schema rows (one per turn)."""
        if not self.turns:
            raise ValueError(f"episode {self.episode_id} has no turns")
        out = []
        last = len(self.turns) - 1
        for i, t in enumerate(self.turns):
            out.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "episode_id": self.episode_id,
                    "turn": i,
                    "env_id": self.env_id,
                    "source": self.source,
                    "seed": int(self.seed),
                    "image": encode_png(t.image),
                    "obs_text": t.obs_text,
                    "prompt": t.prompt,
                    "response": t.response,
                    "action": t.action,
                    "valid": bool(t.valid),
                    "reward": float(t.reward),
                    "terminated": bool(t.terminated),
                    "truncated": bool(t.truncated),
                    "success": bool(self.success),
                    "strict_success": bool(self.strict_success),
                    "episode_return": self.episode_return,
                    "final_image": encode_png(self.final_image)
                    if i == last and self.final_image is not None
                    else None,
                    "final_prompt": self.final_prompt if i == last else None,
                    "response_ids": None if t.response_ids is None else [int(x) for x in t.response_ids],
                    "response_finished": None if t.response_finished is None else bool(t.response_finished),
                }
            )
        return out

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], where: str = "dataset") -> Episode:
        """Rebuild an episode from its rows (any order)."""
        rows = sorted(rows, key=lambda r: r["turn"])
        first, last = rows[0], rows[-1]
        turns = [
            Turn(
                image=decode_png(r["image"], f"{where}: episode {r['episode_id']} turn {r['turn']}"),
                obs_text=r["obs_text"],
                prompt=r["prompt"],
                response=r["response"],
                action=r["action"],
                valid=bool(r["valid"]),
                reward=float(r["reward"]),
                terminated=bool(r["terminated"]),
                truncated=bool(r["truncated"]),
                response_ids=r.get("response_ids"),
                response_finished=r.get("response_finished"),
            )
            for r in rows
        ]
        final = last.get("final_image")
        return cls(
            episode_id=first["episode_id"],
            env_id=first["env_id"],
            source=first["source"],
            seed=int(first["seed"]),
            turns=turns,
            final_image=None if final is None else decode_png(final, f"{where}: final image"),
            final_prompt=last.get("final_prompt"),
            success=bool(first["success"]),
            strict_success=bool(first["strict_success"]),
        )
