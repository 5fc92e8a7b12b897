"""Backward lanes: batches whose next-turn values come from the previous step's main pass.

A batch of ``B`` turns is ``B`` *lanes*. Each lane holds a run of consecutive turns of one episode (a
segment of the replay's stream, :func:`~vlmq.data.batches.episode_segments`) and hands out one turn
per batch, last turn first: the lane's row at step ``k`` is turn ``t + 1`` and at step ``k + 1`` turn
``t`` of the same episode. The bootstrap value of turn ``t``, ``V'(s_{t+1}^0)``, is the value at the
first response state of turn ``t + 1``, which the step before computed in its main pass; the lane
keeps it (:meth:`BackwardLanes.record`) and the next batch carries it (``make_batch(next_values=)``),
so only a lane's first turn of a run (an episode's last turn, or a turn whose run was cut) needs the
gradient-free bootstrap pass, and only when it has a next state at all.

The carried value is one optimizer step old (computed before the step's update of the backbone and
the target head); the target head is a slow average already (``tau``), so this moves the target by
much less than the averaging does. Walking episodes backward also carries a reward back through a
whole episode in one sweep, where uniform sampling needs many passes.

The lanes draw their runs from :meth:`ReplayStore.sample <vlmq.data.replay.ReplayStore.sample>` in
pulls of turns (offline stream and online window mixed as usual); a run cut between two pulls is
walked as two runs. Every process of a data-parallel run holds all ``B * P`` lanes (the same seeded
stream) and trains on its own ``B``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmq.data.batches import TurnSample, episode_segments

LANE_SEGMENT = 1_000_000  # the replay's segment length when lanes walk whole episodes


def split_runs(samples: list[TurnSample]) -> list[list[TurnSample]]:
    """``samples`` (a pull of the stream) cut into runs of consecutive turns of one episode."""
    return [[samples[i] for i in run] for run in episode_segments(samples, LANE_SEGMENT)]


class BackwardLanes:
    """``num_lanes`` lanes over a replay (module docstring); :meth:`next` gives one turn per lane and
    the carried next-turn value of each (``None``: bootstrap it), :meth:`record` keeps this step's
    first-state values for the next call."""

    def __init__(self, replay: Any, num_lanes: int, rng: np.random.Generator, pull: int = 64) -> None:
        if num_lanes < 1:
            raise ValueError(f"num_lanes must be >= 1, got {num_lanes}")
        self.replay = replay
        self.rng = rng
        self.pull = max(int(pull), num_lanes)
        self.lanes: list[list[TurnSample]] = [[] for _ in range(num_lanes)]  # turns left, in turn order
        self.pending: list[list[TurnSample]] = []  # runs not yet given to a lane
        self.values: list[float | None] = [None] * num_lanes  # first-state value of each lane's last row

    def next(self) -> tuple[list[TurnSample], list[float | None]]:
        """One turn per lane (the last one it has left) and its carried ``V'(s_{t+1}^0)``: the value
        recorded for the lane's previous row, which is the next turn of the same run, else ``None``."""
        turns: list[TurnSample] = []
        carried: list[float | None] = []
        for j, lane in enumerate(self.lanes):
            fresh = not lane
            if fresh:
                while not self.pending:
                    self.pending = split_runs(self.replay.sample(self.pull, self.rng))
                lane.extend(self.pending.pop(0))
            turns.append(lane.pop())
            carried.append(None if fresh or turns[-1].next_image is None else self.values[j])
            self.values[j] = None
        return turns, carried

    def record(self, values: list[float | None], first_lane: int = 0) -> None:
        """The first-response-state values (target head) of the rows :meth:`next` just gave to lanes
        ``first_lane, first_lane + 1, ...`` (a process's own lanes; ``None``: a row without a
        response token)."""
        if not 0 <= first_lane <= len(self.lanes) - len(values):
            raise ValueError(
                f"{len(values)} values from lane {first_lane} do not fit {len(self.lanes)} lanes"
            )
        self.values[first_lane : first_lane + len(values)] = list(values)

    def state_dict(self) -> dict[str, Any]:
        return {"lanes": self.lanes, "pending": self.pending, "values": self.values}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lanes = [list(lane) for lane in state["lanes"]]
        self.pending = [list(run) for run in state["pending"]]
        self.values = list(state["values"])
