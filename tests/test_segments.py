"""Segments of consecutive turns (``TrainConfig.segment_turns``) and linked next states: the stream and
the replay sample whole runs of one episode, every turn once per epoch; ``segment_turns=1`` is the old
stream; a next state read from a row of the batch gives the same losses and gradients as the
bootstrap pass (vlmq.data.batches, vlmq.data.replay, vlmq.train.objective)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from test_data_batches import KnownEncoder, _img, _two_episodes
from vlmq.algo.afsft import AFSFTConfig
from vlmq.data.batches import (
    SAMPLE_COLUMNS,
    OfflineStream,
    TurnSample,
    episode_segments,
    make_batch,
    samples_from_rows,
)
from vlmq.data.replay import ReplayStore
from vlmq.data.schema import Episode, Turn
from vlmq.data.store import EpisodeStore, write_dataset
from vlmq.models.policy import Policy
from vlmq.models.tiny import save_tiny
from vlmq.train.objective import compute_loss


def _episodes(lengths: list[int], size: int = 4, seed: int = 0, truncate_last: bool = False) -> list[Episode]:
    """Episodes of the given lengths; turn ``t`` of episode ``i`` has prompt ``"p{i} t{t}"``; every
    episode terminates, except the last one when ``truncate_last`` (then it has a final observation)."""
    rng = np.random.default_rng(seed)
    eps = []
    for i, n in enumerate(lengths):
        ts = [
            Turn(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "o", f"p{i} t{t}",
                 ["+", "-"][(i + t) % 2], "a", True, float(rng.normal()))
            for t in range(n)
        ]  # fmt: skip
        ep = Episode(f"e{i:03d}", "fake/Env", "random", i, ts)
        if truncate_last and i == len(lengths) - 1:
            ts[-1].truncated = True
            ep.final_image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            ep.final_prompt = f"p{i} final"
        else:
            ts[-1].terminated = True
        eps.append(ep)
    return eps


def _key(s: TurnSample) -> tuple[str, int]:
    assert s.episode_id is not None and s.turn is not None
    return s.episode_id, s.turn


def _check_segments(seq: list[TurnSample], k: int) -> None:
    """Turn ``t`` with ``t % k != 0`` comes right after turn ``t - 1`` of its episode (a fresh segment
    starts at a multiple of ``k``), unless it opens the sequence (a segment cut between two takes)."""
    for i, s in enumerate(seq[1:], 1):
        ep, t = _key(s)
        if t % k:
            assert _key(seq[i - 1]) == (ep, t - 1), (i, _key(seq[i - 1]), (ep, t))


LENGTHS = [1, 2, 3, 4, 5, 6, 7, 9, 2, 1, 8, 3]  # 51 turns


def test_episode_segments_cut_runs_of_one_episode() -> None:
    store_rows = [r for ep in _episodes([3, 5, 1]) for r in ep.rows()]
    samples = samples_from_rows(store_rows)
    segs = episode_segments(samples, 2)
    assert [[_key(samples[i]) for i in seg] for seg in segs] == [
        [("e000", 0), ("e000", 1)], [("e000", 2)],
        [("e001", 0), ("e001", 1)], [("e001", 2), ("e001", 3)], [("e001", 4)],
        [("e002", 0)],
    ]  # fmt: skip
    assert episode_segments(samples, 1) == [[i] for i in range(len(samples))]
    assert episode_segments(samples, 100) == [[0, 1, 2], [3, 4, 5, 6, 7], [8]]
    del samples[4]  # a missing turn ends a segment
    assert [[_key(samples[i]) for i in seg] for seg in episode_segments(samples, 5)][1:3] == [
        [("e001", 0)], [("e001", 2), ("e001", 3), ("e001", 4)],
    ]  # fmt: skip


@pytest.mark.parametrize("k", [2, 4])
def test_stream_of_segments_covers_every_turn_once_per_epoch(tmp_path: Path, k: int) -> None:
    store = write_dataset(tmp_path / "ds", _episodes(LENGTHS), shard_episodes=3)
    total = sum(LENGTHS)
    stream = OfflineStream(store, seed=3, buffer_turns=12, segment_turns=k)  # several buffers per epoch
    batches = [stream.take(8) for _ in range(2 * total // 8 + 1)]
    seq = [s for b in batches for s in b]
    every = sorted((f"e{i:03d}", t) for i, n in enumerate(LENGTHS) for t in range(n))
    assert sorted(map(_key, seq[:total])) == every  # each turn exactly once in epoch 0 ...
    assert sorted(map(_key, seq[total : 2 * total])) == every  # ... and in epoch 1
    _check_segments(seq, k)  # segments never cross an episode, turns in order
    # the stream is really in segments: most turns follow their predecessor
    follows = sum(_key(b) == (_key(a)[0], _key(a)[1] + 1) for a, b in itertools.pairwise(seq))
    assert follows >= 0.5 * len(seq) * (1 - 1 / k)
    # the cursor resumes the same stream of segments
    cursor = stream.state_dict()
    assert cursor["segment_turns"] == k
    again = OfflineStream(EpisodeStore(tmp_path / "ds"), seed=3, buffer_turns=12, segment_turns=k)
    again.load_state_dict(cursor)
    assert [s.where for s in again.take(20)] == [s.where for s in stream.take(20)]


def test_one_turn_segments_are_the_old_stream(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", _episodes(LENGTHS), shard_episodes=3)
    new = OfflineStream(store, seed=5, buffer_turns=12, segment_turns=1)
    plain = OfflineStream(store, seed=5, buffer_turns=12)
    assert [s.where for s in new.take(70)] == [s.where for s in plain.take(70)]
    # the turn permutation of each buffer, as before segments existed
    ref = OfflineStream(store, seed=5, buffer_turns=12, segment_turns=1)
    groups = ref._epoch_groups()
    expected: list[str] = []
    for b, group in enumerate(groups):
        samples = [
            s for i in group
            for s in samples_from_rows(store.read_shard(ref._shards[i], SAMPLE_COLUMNS), str(ref._shards[i]))
        ]  # fmt: skip
        order = np.random.default_rng([5, 0, b]).permutation(len(samples))
        expected += [samples[int(i)].where for i in order]
    assert [s.where for s in ref.take(len(expected))] == expected


def test_replay_draws_online_segments(tmp_path: Path) -> None:
    replay = ReplayStore(tmp_path / "on", None, capacity=100, segment_turns=3)
    replay.add(_episodes(LENGTHS))
    rng = np.random.default_rng(0)
    seen: set[tuple[str, int]] = set()
    for _ in range(60):
        batch = replay.sample(7, rng)
        assert len(batch) == 7
        # segments start at multiples of 3 (the last one may be cut): check within the batch
        for i, s in enumerate(batch):
            ep, t = _key(s)
            if t % 3 and i and _key(batch[i - 1])[0] == ep:
                assert _key(batch[i - 1]) == (ep, t - 1)
        runs = 0  # a batch holds at most 7 segments, and those are runs of one episode
        for i, s in enumerate(batch):
            runs += not (i and _key(batch[i - 1]) == (_key(s)[0], _key(s)[1] - 1) and _key(s)[1] % 3)
        assert runs <= 7
        seen |= set(map(_key, batch))
    assert len(seen) == sum(LENGTHS)  # every turn gets drawn
    # segment_turns = 1: the old uniform draw of turns
    old = ReplayStore(tmp_path / "on", None, capacity=100)
    one = ReplayStore(tmp_path / "on", None, capacity=100, segment_turns=1)
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    online = old.online_samples()
    ref = [online[int(i)].where for i in np.random.default_rng(4).integers(0, len(online), 9)]
    assert [s.where for s in old.sample(9, a)] == [s.where for s in one.sample(9, b)] == ref


def test_make_batch_links_next_states_held_by_a_row(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", _two_episodes())
    samples = samples_from_rows(store.iter_turns())  # A0, A1 (terminated), B0 (truncated)
    old = make_batch(KnownEncoder(), samples)
    enc = KnownEncoder()
    batch = make_batch(enc, samples, link=True)
    assert batch.has_next.tolist() == old.has_next.tolist() == [True, False, True]
    assert batch.next_row is not None and batch.next_row.tolist() == [1, -1, -1]  # A0 -> A1's row
    assert batch.next_index.tolist() == [-1, -1, 0]  # only B0's final observation is bootstrapped
    assert batch.next_inputs is not None and batch.next_inputs["pixel"].tolist() == [99]
    assert enc.calls == [3, 1]
    assert torch.equal(batch.inputs["input_ids"], old.inputs["input_ids"])
    assert old.next_row is None  # off by default: the old batch
    # a row with no response token holds no response state: not linked
    samples[1].response_ids, samples[0].response_ids = [], [R_ID]
    assert make_batch(_IdsEncoder(), samples, link=True).next_row.tolist() == [-1, -1, -1]  # type: ignore[union-attr]


R_ID = 2


class _IdsEncoder(KnownEncoder):
    """KnownEncoder that takes ``response_ids`` (the ids are the response tokens, no end of turn)."""

    def encode(self, images: Any, prompts: Any, responses: Any = None, response_ids: Any = None) -> Any:
        out = super().encode(images, prompts, responses)
        if responses is not None and response_ids is not None:
            for b, ids in enumerate(response_ids):
                if ids is not None and len(ids) == 0:
                    out["response_mask"][b] = False
        return out


# ----------------------------------------------------------------------------- the loss, on a real model
@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    base = save_tiny("idefics3", tmp_path_factory.mktemp("tiny"), seed=0)
    pol = Policy.from_pretrained(base, critic_init_std=0.05)
    with torch.no_grad():  # the target differs from the online critic: reading the wrong head shows
        pol.target_head.weight.add_(0.2 * torch.randn_like(pol.target_head.weight))
        pol.target_head.bias.fill_(1.0)  # next values far from 0, and apart for the two heads
        pol.critic_head.bias.fill_(-0.5)
    return pol


def _grads(policy: Policy) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in policy.trainable_parameters() if p.grad is not None]


def assert_same_losses_and_grads(
    policy: Policy, first: Any, second: Any, cfg: AFSFTConfig, use_target: bool = True
) -> tuple[Any, Any]:
    """The AFSFT loss of two batches on ``policy``: actor and critic losses and every gradient equal
    (to float rounding); returns both outputs."""
    outs, grads = [], []
    for batch in (first, second):
        policy.zero_grad(set_to_none=True)
        out = compute_loss(policy, batch, cfg, use_target=use_target)
        out.loss.backward()
        outs.append(out)
        grads.append(_grads(policy))
    a, b = outs
    assert a.critic_loss.item() == pytest.approx(b.critic_loss.item(), rel=1e-5, abs=1e-7)
    assert a.actor_loss.item() == pytest.approx(b.actor_loss.item(), rel=1e-5, abs=1e-7)
    assert len(grads[0]) == len(grads[1]) > 0
    for ga, gb in zip(*grads, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    return a, b


@pytest.mark.parametrize("use_target", [True, False])
def test_linked_next_states_give_the_bootstrap_losses_and_gradients(
    policy: Policy, tmp_path: Path, use_target: bool
) -> None:
    # e0: turns 0-3 (terminated at 3); e1: turns 0-3, then turn 5 (truncated, final observation):
    # 6 next states are rows of the batch, 2 are not (e1 turn 4 is left out, and the final observation)
    store = write_dataset(tmp_path / "ds", _episodes([4, 6], size=24, seed=1, truncate_last=True))
    every = samples_from_rows(store.iter_turns())
    samples = every[:8] + every[9:]
    linked = make_batch(policy, samples, link=True)
    boot = make_batch(policy, samples, link=False)
    assert linked.next_row is not None and linked.next_row.tolist() == [1, 2, 3, -1, 5, 6, 7, -1, -1]
    assert linked.next_index.tolist() == [-1] * 7 + [0, 1]
    assert linked.next_inputs is not None and linked.next_inputs["input_ids"].shape[0] == 2
    assert boot.next_inputs is not None and boot.next_inputs["input_ids"].shape[0] == 8
    assert linked.has_next.tolist() == boot.has_next.tolist() == [True] * 3 + [False] + [True] * 5

    cfg = AFSFTConfig(gamma=0.9, turn_lambda=0.5)
    policy.train()
    a, b = assert_same_losses_and_grads(policy, linked, boot, cfg, use_target=use_target)
    assert a.metrics["target_mean"] == pytest.approx(b.metrics["target_mean"], rel=1e-5, abs=1e-6)

    # the next states matter here: without them the critic loss changes (so the check above bites)
    policy.zero_grad(set_to_none=True)
    no_next = make_batch(policy, samples, link=True)
    no_next.has_next = torch.zeros_like(no_next.has_next)
    c = compute_loss(policy, no_next, cfg, use_target=use_target)
    assert abs(c.critic_loss.item() - a.critic_loss.item()) > 0.05 * abs(a.critic_loss.item())
    policy.zero_grad(set_to_none=True)


def test_learner_batches_keep_segments_together(tmp_path: Path) -> None:
    from vlmq.train.config import TrainConfig
    from vlmq.train.learner import TrainData

    write_dataset(tmp_path / "ds", _episodes([8, 8, 8, 8]), shard_episodes=4)
    cfg = TrainConfig("fake/Env", "tiny", str(tmp_path / "run"), str(tmp_path / "ds"), batch_size=4,
                      segment_turns=4)  # fmt: skip
    parts = [TrainData(cfg, KnownEncoder(), tmp_path / "run", i, 2).next_batch() for i in range(2)]
    for batch in parts:  # each process: one whole segment, 3 of its next states linked
        assert batch.next_row is not None and int((batch.next_row >= 0).sum()) == 3
        assert batch.next_inputs is None or batch.next_inputs["input_ids"].shape[0] == 1
    old = TrainData(dataclass_replace(cfg, segment_turns=1), KnownEncoder(), tmp_path / "run", 0, 1)
    assert old.next_batch().next_row is None


def dataclass_replace(cfg: Any, **kw: Any) -> Any:
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_segment_turns_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import vlmq.train.learner as learner_mod
    from vlmq.cli import app

    calls: list[Any] = []
    monkeypatch.setattr(
        learner_mod, "train", lambda cfg, **kw: calls.append(cfg) or {"steps": 0, "wall_time_s": 0}
    )
    write_dataset(
        tmp_path / "ds", [Episode("a", "x", "random", 0, [Turn(_img(1), "o", "p", "r", "a", True, 0.0)])]
    )
    args = ["train", "--env", "gym_cards/NumberLine", "--model", "tiny", "--data", str(tmp_path / "ds"),
            "--out", str(tmp_path / "r")]  # fmt: skip
    r = CliRunner().invoke(app, [*args, "--segment-turns", "4"])
    assert r.exit_code == 0, r.output
    assert calls[-1].segment_turns == 4
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and calls[-1].segment_turns == 1  # the default
    r = CliRunner().invoke(app, [*args, "--segment-turns", "0"])
    assert r.exit_code != 0
