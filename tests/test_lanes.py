"""Backward lanes (``TrainConfig.backward_lanes``, vlmq.data.lanes): each lane walks runs of one episode
from the last turn back, the value a turn bootstraps from is carried from the previous step's main
pass, and with the model unchanged between the two steps that gives the same losses and gradients as
the bootstrap pass; the lanes resume where they stopped."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from test_data_batches import KnownEncoder
from test_segments import LENGTHS, _episodes, _key, assert_same_losses_and_grads, policy  # noqa: F401  (policy: a fixture)
from vlmq.algo.afsft import AFSFTConfig
from vlmq.data.batches import make_batch, samples_from_rows
from vlmq.data.lanes import LANE_SEGMENT, BackwardLanes, split_runs
from vlmq.data.replay import ReplayStore
from vlmq.data.store import EpisodeStore, write_dataset
from vlmq.models.policy import Policy
from vlmq.train.config import TrainConfig
from vlmq.train.learner import TrainData


def _lanes(tmp_path: Path, num_lanes: int, lengths: list[int] = LENGTHS, seed: int = 0) -> BackwardLanes:
    store = write_dataset(tmp_path / "ds", _episodes(lengths, seed=seed), shard_episodes=4)
    replay = ReplayStore(tmp_path / "replay", EpisodeStore(store.path), 100, 0.0, seed=seed,
                         segment_turns=LANE_SEGMENT)  # fmt: skip
    return BackwardLanes(replay, num_lanes, np.random.default_rng(seed), pull=16)


def test_split_runs_cuts_where_the_episode_or_the_turn_order_breaks(tmp_path: Path) -> None:
    store = write_dataset(tmp_path / "ds", _episodes([3, 2]))
    s = samples_from_rows(store.iter_turns())  # e0 t0-2, e1 t0-1
    runs = split_runs([s[0], s[1], s[2], s[3], s[4], s[1]])
    assert [[_key(x) for x in r] for r in runs] == [
        [("e000", 0), ("e000", 1), ("e000", 2)],
        [("e001", 0), ("e001", 1)],
        [("e000", 1)],
    ]
    assert split_runs([]) == []


def test_lanes_walk_episodes_backward_and_carry_the_recorded_values(tmp_path: Path) -> None:
    lanes = _lanes(tmp_path, 3)
    seen: list[tuple[str, int]] = []
    prev: list[tuple[str, int] | None] = [None] * 3
    for step in range(40):
        turns, carried = lanes.next()
        assert len(turns) == len(carried) == 3
        for j, (t, c) in enumerate(zip(turns, carried, strict=True)):
            key = _key(t)
            continues = prev[j] is not None and prev[j] == (key[0], key[1] + 1)
            if continues:  # the lane's previous row was this turn's next turn: its value is carried
                assert c == 1000 * step - 1000 + j
            else:  # a new run starts at the run's last turn, and bootstraps (or has no next state)
                assert c is None
            prev[j] = key
            seen.append(key)
        lanes.record([1000.0 * step + j for j in range(3)])
    # every turn of the data is visited (120 turns drawn from 51)
    assert set(seen) >= {(f"e{i:03d}", t) for i, n in enumerate(LENGTHS) for t in range(n)}


def test_lanes_skip_rows_without_a_value_or_a_next_state(tmp_path: Path) -> None:
    lanes = _lanes(tmp_path, 2, lengths=[4, 4])
    turns, carried = lanes.next()
    assert carried == [None, None] and [t.turn for t in turns] == [3, 3]  # each episode's last turn
    lanes.record([None, 2.0])  # lane 0's row had no response token: nothing to carry
    _, carried = lanes.next()
    assert carried == [None, 2.0]
    with pytest.raises(ValueError, match="do not fit"):
        lanes.record([1.0, 2.0], first_lane=1)


def test_carried_values_give_the_bootstrap_losses_and_gradients(policy: Policy, tmp_path: Path) -> None:  # noqa: F811
    store = write_dataset(tmp_path / "ds", _episodes([4, 6, 3], size=24, seed=1, truncate_last=True))
    replay = ReplayStore(
        tmp_path / "replay", EpisodeStore(store.path), 100, 0.0, seed=1, segment_turns=LANE_SEGMENT
    )
    lanes = BackwardLanes(replay, 3, np.random.default_rng(1), pull=16)
    cfg = AFSFTConfig(gamma=0.9, turn_lambda=0.5)
    policy.train()
    checked = 0
    for _ in range(6):  # no optimizer step in between: the carried values are this model's
        turns, carried = lanes.next()
        lane_batch = make_batch(policy, turns, next_values=carried)
        boot_batch = make_batch(policy, turns)
        assert lane_batch.has_next.tolist() == boot_batch.has_next.tolist()
        n_carried = sum(c is not None for c in carried)
        n_boot = 0 if lane_batch.next_inputs is None else lane_batch.next_inputs["input_ids"].shape[0]
        assert n_boot == int(boot_batch.has_next.sum()) - n_carried  # only the others are bootstrapped
        a, _ = assert_same_losses_and_grads(policy, lane_batch, boot_batch, cfg)
        assert a.first_values is not None
        lanes.record([None if v != v else float(v) for v in a.first_values.tolist()])
        checked += n_carried
    assert checked >= 6  # the carried path was really exercised
    policy.zero_grad(set_to_none=True)


def test_learner_lanes_resume_the_same_batches(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", _episodes([5, 3, 6, 2, 4]), shard_episodes=2)
    cfg = TrainConfig("fake/Env", "tiny", str(tmp_path / "run"), str(tmp_path / "ds"), batch_size=2,
                      backward_lanes=True, seed=3)  # fmt: skip

    def walk(data: TrainData, n: int, start: int = 0) -> list[tuple[list[str], list[float]]]:
        out = []
        for k in range(start, start + n):
            batch = data.next_batch()
            assert batch.next_value is not None
            out.append(([w for w in batch.rewards.tolist()], batch.next_value.tolist()))
            data.record_values(torch.tensor([10.0 * k, 10.0 * k + 1]))
        return out

    ref = walk(TrainData(cfg, KnownEncoder(), tmp_path / "run"), 12)
    first = TrainData(cfg, KnownEncoder(), tmp_path / "run")
    part = walk(first, 5)
    again = TrainData(cfg, KnownEncoder(), tmp_path / "run")
    again.load_state_dict(first.state_dict())
    rest = walk(again, 7, start=5)
    assert str(part + rest) == str(ref)  # NaN-safe comparison
    assert any(v == v for _, vals in ref for v in vals)  # some values were carried
    # two processes: each trains on its own lanes of the same walk
    halves = [
        TrainData(dataclasses.replace(cfg, batch_size=1), KnownEncoder(), tmp_path / "run", i, 2)
        for i in (0, 1)
    ]
    both = [h.next_batch().rewards.tolist() for h in halves]
    assert both[0] + both[1] == ref[0][0]


def test_backward_lanes_default_and_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    import vlmq.train.learner as learner_mod
    from vlmq.cli import app
    from vlmq.data.schema import Episode, Turn

    base = TrainConfig("fake/Env", "tiny", str(tmp_path / "run"))
    assert base.backward_lanes is None and base.uses_lanes  # AFSFT: lanes
    sft = dataclasses.replace(base, loss=AFSFTConfig.for_filter("none"))
    assert not sft.uses_lanes  # plain SFT needs no next-turn values: shuffled single turns
    assert not dataclasses.replace(base, segment_turns=4).uses_lanes
    assert not dataclasses.replace(base, backward_lanes=False).uses_lanes
    # a run saved before the field existed resumes as it ran: single turns
    saved = base.to_dict()
    del saved["backward_lanes"]
    (tmp_path / "old.json").write_text(json.dumps(saved))
    assert not TrainConfig.load(tmp_path / "old.json").uses_lanes

    calls: list[TrainConfig] = []
    monkeypatch.setattr(
        learner_mod, "train", lambda cfg, **kw: calls.append(cfg) or {"steps": 0, "wall_time_s": 0}
    )
    write_dataset(
        tmp_path / "ds",
        [
            Episode(
                "a", "x", "random", 0, [Turn(np.zeros((4, 4, 3), np.uint8), "o", "p", "r", "a", True, 0.0)]
            )
        ],
    )
    args = ["train", "--env", "gym_cards/NumberLine", "--model", "tiny", "--data", str(tmp_path / "ds"),
            "--out", str(tmp_path / "r")]  # fmt: skip
    for extra, want in (([], True), (["--backward-lanes", "off"], False), (["--filter", "none"], False)):
        r = CliRunner().invoke(app, [*args, *extra])
        assert r.exit_code == 0, r.output
        assert calls[-1].uses_lanes is want
