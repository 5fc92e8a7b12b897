"""Training batches: exact layout on a hand-built episode, bounded memory, resumable cursor."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmq.data.batches import OfflineStream, make_batch, samples_from_rows
from vlmq.data.schema import Episode, Turn
from vlmq.data.store import EpisodeStore, write_dataset

PAD, P, R, EOT, GEN = 0, 1, 2, 3, 4


class KnownEncoder:
    """A policy whose ``encode`` is simple and known.

    Prompt: one token ``P`` per word. Response: one ``R`` per word plus the end-of-turn token ``EOT``.
    Training layout right padded with ``PAD``; prompt-only layout left padded and ending in ``GEN`` (the
    state before the first response token). ``pixel`` is each image's top-left red value.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(
        self, images: list[np.ndarray], prompts: list[str], responses: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        self.calls.append(len(prompts))
        seqs, resp = [], []
        for i, p in enumerate(prompts):
            ids = [P] * len(p.split())
            if responses is None:
                seqs.append([*ids, GEN])
                resp.append([False] * (len(ids) + 1))
            else:
                r = [R] * len(responses[i].split()) + [EOT]
                seqs.append(ids + r)
                resp.append([False] * len(ids) + [True] * len(r))
        T = max(len(s) for s in seqs)
        ids_t = torch.full((len(seqs), T), PAD)
        att = torch.zeros(len(seqs), T, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.bool)
        for b, (s, m) in enumerate(zip(seqs, resp, strict=True)):
            sl = slice(0, len(s)) if responses is not None else slice(T - len(s), T)
            ids_t[b, sl] = torch.tensor(s)
            att[b, sl] = 1
            mask[b, sl] = torch.tensor(m)
        pixel = torch.tensor([int(im[0, 0, 0]) for im in images])
        out = {"input_ids": ids_t, "attention_mask": att, "pixel": pixel}
        if responses is not None:
            out["response_mask"] = mask
        return out


def _img(v: int) -> np.ndarray:
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    a[0, 0, 0] = v
    return a


def _two_episodes() -> list[Episode]:
    a = Episode(
        "A", "fake/Env", "expert", 1,
        [
            Turn(_img(10), "o0", "a b", "x", "x", True, 0.5),
            Turn(_img(11), "o1", "a b c", "x y z", "z", True, 1.0, terminated=True),
        ],
        final_image=_img(12), final_prompt="after the end", success=True,
    )  # fmt: skip
    b = Episode(
        "B", "fake/Env", "random", 2,
        [Turn(_img(20), "o0", "a", "x y", None, False, -1.0, truncated=True)],
        final_image=_img(99), final_prompt="f f f f",
    )  # fmt: skip
    return [a, b]


def test_batch_layout_on_a_hand_built_episode(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", _two_episodes())
    samples = samples_from_rows(store.iter_turns())  # sorted: A0, A1, B0
    batch = make_batch(KnownEncoder(), samples)
    assert batch.inputs["input_ids"].tolist() == [
        [P, P, R, EOT, PAD, PAD, PAD],
        [P, P, P, R, R, R, EOT],
        [P, R, R, EOT, PAD, PAD, PAD],
    ]
    assert batch.inputs["pixel"].tolist() == [10, 11, 20]
    f, t = False, True
    assert batch.response_mask.tolist() == [
        [f, f, t, t, f, f, f],
        [f, f, f, t, t, t, t],
        [f, t, t, t, f, f, f],
    ]
    assert batch.rewards.tolist() == [0.5, 1.0, -1.0]
    assert batch.terminated.tolist() == [False, True, False]
    assert batch.truncated.tolist() == [False, False, True]
    # A0 bootstraps from A1's observation; A1 terminated: nothing; B0 truncated: its final observation
    assert batch.has_next.tolist() == [True, False, True]
    assert batch.next_index.tolist() == [0, -1, 1]
    nxt = batch.next_inputs
    assert nxt is not None
    assert nxt["pixel"].tolist() == [11, 99]
    assert nxt["input_ids"].tolist() == [[PAD, P, P, P, GEN], [P, P, P, P, GEN]]  # left padded
    assert (nxt["input_ids"][:, -1] == GEN).all()  # last position: state before the first response token


def test_no_next_inputs_when_every_turn_terminates(tmp_path: Path) -> None:
    ep = _two_episodes()[0]
    ep.turns = ep.turns[1:]
    batch = make_batch(KnownEncoder(), samples_from_rows(ep.rows()))
    assert batch.next_inputs is None and batch.next_index.tolist() == [-1]
    assert batch.has_next.tolist() == [False]


def _random_episodes(n: int, turns: int = 3, size: int = 48, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        ts = [
            Turn(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "o", f"p{i}.{t}", "r", "a", True, 0.0)
            for t in range(turns)
        ]
        ts[-1].terminated = True
        eps.append(Episode(f"e{i:03d}", "fake/Env", "random", i, ts))
    return eps


def test_streaming_is_memory_bounded(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", _random_episodes(40), shard_episodes=5)  # 8 shards x 15 turns
    dataset_bytes = sum(p.stat().st_size for p in store.shards())
    loads: list[int] = []
    orig = store.read_shard

    def counting(shard: Path, columns: Any = None) -> list[dict[str, Any]]:
        rows = orig(shard, columns)
        loads.append(len(rows))
        return rows

    store.read_shard = counting  # type: ignore[method-assign]
    stream = OfflineStream(store, seed=0, buffer_turns=15)  # one shard (1/8 of the data) per buffer
    tracemalloc.start()
    try:
        seen = [s.prompt for _ in range(30) for s in stream.take(8)]  # 240 turns = two epochs
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(loads) == 16 and max(loads) == 15  # one shard read at a time, each once per epoch
    assert sorted(seen[:120]) == sorted(seen[120:]) and len(set(seen[:120])) == 120
    assert peak < 0.3 * dataset_bytes, (peak, dataset_bytes)  # about one 15-turn buffer


def test_stream_resumes_the_same_batches(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", _random_episodes(12, size=8), shard_episodes=3)
    stream = OfflineStream(store, seed=7, buffer_turns=9)
    for _ in range(4):
        make_batch(KnownEncoder(), stream.take(5))
    cursor = stream.state_dict()
    assert set(cursor) >= {"epoch", "buffer", "pos", "seed", "num_shards"}
    expected = [s.where for _ in range(10) for s in stream.take(5)]
    again = OfflineStream(EpisodeStore(tmp_path / "ds"), seed=7, buffer_turns=9)
    again.load_state_dict(cursor)
    assert [s.where for _ in range(10) for s in again.take(5)] == expected
    batch = make_batch(KnownEncoder(), again.take(5))
    assert len(batch) == 5 and batch.inputs["input_ids"].shape[0] == 5


def test_stream_picks_up_shards_appended_while_reading(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", _random_episodes(4, turns=1, size=4), shard_episodes=2)
    stream = OfflineStream(EpisodeStore(tmp_path / "ds"), seed=1)
    first = {s.prompt for s in stream.take(2)}
    state = stream.state_dict()
    fresh = Episode("new", "fake/Env", "online", 0, [Turn(_img(1), "o", "fresh", "r", "a", True, 1.0)])
    store.append([fresh])  # a new shard, mid-epoch
    epoch0 = first | {s.prompt for s in stream.take(2)}
    assert "fresh" not in epoch0 and len(epoch0) == 4  # the running epoch keeps its shard list
    epoch1 = [s.prompt for s in stream.take(5)]
    assert "fresh" in epoch1  # the next epoch sees the new shards
    resumed = OfflineStream(EpisodeStore(tmp_path / "ds"), seed=1)
    resumed.load_state_dict(state)  # the cursor remembers the epoch's shard count
    assert {s.prompt for s in resumed.take(2)} | first == epoch0
