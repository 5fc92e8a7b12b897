"""The typed configuration of a training run, saved as ``config.json`` in every run folder.

``vlmq train`` is generated from these fields (and :class:`~vlmq.algo.afsft.AFSFTConfig`'s): one flag
per field, its default and, as help, the first sentence of its docstring (:mod:`vlmq.commands.train`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlmq.algo.afsft import AFSFTConfig
from vlmq.models.prompts import MAX_NEW_TOKENS
from vlmq.utils.io import atomic_write_json


@dataclass
class TrainConfig:
    """Everything that defines a run. ``vlmq train`` builds one from its options.

    Rules between fields live in :meth:`__post_init__`: the default run folder and ``lora_alpha = 2 *
    lora_r`` unless given."""

    env: str
    """Environment id, e.g. ``gym_cards/NumberLine`` (prompts and evaluation)."""
    model: str
    """Base model (hub name or folder) or a saved vlmq policy folder."""
    out: str = ""
    """Run folder: config, checkpoints, TensorBoard logs, metrics, summary and plots (empty:
    ``runs/<env>-<filter>-seed<seed>``)."""
    data: str | None = None
    """Offline dataset folder (``vlmq collect``); ``None`` = start online from scratch."""
    seed: int = 0
    """Seed of everything (initialisation, batches, online episodes)."""
    loss: AFSFTConfig = field(default_factory=AFSFTConfig)

    # critic target
    target: Literal["polyak", "online"] = "polyak"
    """``polyak``: a Polyak-averaged copy of the critic head; ``online``: the detached online critic."""
    tau: float = 0.05
    """Polyak rate of the target critic per optimizer step."""

    # optimisation
    lr: float = 1e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 8
    """Turns per micro-batch in each process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step. Global batch (turns per optimizer step) = ``batch_size *
    grad_accum * processes``; ``processes`` is set by ``accelerate launch --num_processes`` (1 without
    it). The same global batch on another number of processes gives the same steps (up to rounding)."""
    segment_turns: int = 1
    """Batches are filled with segments of up to this many consecutive turns of one episode (1: single
    turns, shuffled). A turn whose next turn is in the same batch reads ``V'(s_{t+1}^0)`` from that row
    of the main pass, so only each segment's last turn needs the bootstrap pass (same targets, cheaper
    step; docs/design.md, "Segments of consecutive turns"). Default 1: with 8-turn segments the step
    costs 1.08 of an SFT step instead of 1.33, but the critic learned less per step on NumberLine and
    Blackjack (docs/results.md)."""
    backward_lanes: bool | None = None
    """Fill each batch with ``batch_size`` lanes that each walk one episode (or one segment, with
    ``segment_turns > 1``) from its last turn back, one turn per batch: ``V'(s_{t+1}^0)`` of a turn is
    the value the step before computed at the next turn's first response state, so no bootstrap pass
    is needed but for a lane's first turn (docs/design.md, "Backward lanes"). Default (``None``): on
    when the critic is trained and ``segment_turns`` is 1, off for plain SFT (critic loss weight 0,
    which needs no next-turn values and keeps shuffled single turns). Runs made before 8 Dec 2026
    used single turns: ``--backward-lanes off`` repeats them."""
    steps: int = 200
    """Optimizer steps of offline training (``vlmq train`` without ``--data``: 0)."""
    warmup_steps: int = 10
    """Linear learning-rate warm-up steps."""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """After the warm-up: ``constant``, or ``cosine`` decay to ``lr_min_ratio * lr`` at the last step."""
    lr_min_ratio: float = 0.1
    """Final learning rate of the cosine schedule, as a fraction of ``lr``."""
    filter_warmup_steps: int = 500
    """Steps at the start during which every logged token is imitated (filter ``none``) while the critic
    learns; the filter of ``loss`` applies after them."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this (0: no clipping)."""
    bf16: bool | None = None
    """Mixed precision; ``None`` = on for CUDA, off on CPU."""

    # policy (LoRA + heads)
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int | None = None
    """LoRA alpha (scale ``alpha / r``); ``None``: ``2 * lora_r``."""
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Dtype of the frozen backbone weights: ``float32``, ``bfloat16`` or ``float16``; ``None`` =
    ``bfloat16`` on CUDA, ``float32`` on the CPU. LoRA adapters and the critic heads stay float32."""
    gradient_checkpointing: bool = False
    """Recompute the backbone's activations in the backward pass (less memory, about 30 % slower)."""
    critic_init_bias: float | None = None
    """Initial Q-value of every token (default: the offline data's mean return), the critic head's bias.
    ``None``: the mean episode return of the offline data times ``loss.reward_scale`` (0 without
    offline data), so a logged token passes the binary filter when it beats the average logged
    behaviour (why not 0 or the lowest return: docs/design.md, "Why the critic starts at the data's
    mean return")."""
    critic_init_std: float = 0.01
    """Std of the critic head's initial weights (``N(0, std)``, seeded); 0 = zero weights, which send
    no gradient into the backbone at the start."""
    max_new_tokens: int = MAX_NEW_TOKENS
    """Response length limit (tokens) in evaluation and online collection."""
    cot: bool = False
    """Ask for ``{"thoughts": ..., "action": ...}`` instead of ``{"action": ...}``."""

    # bookkeeping
    log_every: int = 10
    """Log training metrics every this many steps."""
    eval_every: int = 100
    """Evaluate every this many steps, and at the start and the end (0: only at the end). Each
    evaluation and each online round also logs sample responses as text (``samples.txt``,
    TensorBoard), so a collapsing output format shows in the logs next to the valid-action rate."""
    eval_episodes: int = 20
    """Episodes per evaluation (0: no evaluation)."""
    eval_sampled: bool = True
    """Also evaluate with sampling (``temperature``), not only greedily."""
    eval_at_start: bool = True
    """Evaluate the untrained policy at step 0 (the start of the learning curve)."""
    eval_seed: int | None = None
    """First evaluation episode seed (the same episodes at every evaluation); ``None``:
    ``seed + 1_000_000``, away from dataset and online-collection seeds."""
    rank_every: int = 100
    """Log the critic's ranking accuracy (:mod:`vlmq.train.ranking`) every this many steps (and at every
    evaluation); 0 = never. Only tasks with a scripted expert in-process are probed."""
    rank_states: int = 64
    """Held-out probe states for the ranking accuracy."""
    checkpoint_every: int = 50
    """Checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept (the newest)."""

    # online phase
    online: bool = False
    """After the offline steps, train on the policy's own episodes (online rounds)."""
    online_rounds: int = 4
    """Online rounds (collect, then train)."""
    online_episodes: int = 16
    """Episodes collected with the current policy per round."""
    online_steps: int = 50
    """Optimizer steps per round."""
    num_envs: int = 4
    """Parallel environments for evaluation and online collection."""
    temperature: float = 1.0
    """Sampling temperature of online collection and sampled evaluation."""
    replay_capacity: int = 2000
    """Online episodes kept (FIFO); offline episodes are never evicted."""
    online_fraction: float = 0.5
    """Share of each batch drawn from online episodes once there are some."""
    online_mode: Literal["sync", "async"] = "sync"
    """``sync``: each round the learner collects ``online_episodes`` with its current weights, then
    trains ``online_steps`` steps (reproducible; a resumed run redoes the round). ``async``: collector
    processes collect continuously with the newest published weights (a checkpoint every
    ``online_steps`` steps) while the learner trains without pause on what has arrived
    (:mod:`vlmq.train.collector`); ``online_rounds * online_steps`` steps in all."""
    collectors: int = 1
    """Collector processes the learner starts in ``async`` mode on its machine (0: none; collectors
    started with ``vlmq collect-online RUN``, e.g. on other machines, feed it)."""
    collector_device: str = "auto"
    """Device of the local collectors (``auto``: CUDA if available)."""

    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:N``. With several processes each uses its
    own device (its GPU, or the CPU with gloo): then only ``auto``, ``cpu`` or ``cuda``."""
    threads: int | None = None
    """torch CPU threads of this process (default: torch's, one per core). Give 1 when several runs
    share a small CPU: two runs of 2 threads each on 2 cores ran over 10x slower than one alone."""

    def __post_init__(self) -> None:
        if not self.out:
            self.out = str(Path("runs") / f"{self.env.replace('/', '-')}-{self.loss.filter}-seed{self.seed}")
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_r

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resume_conflicts(self, new: TrainConfig) -> list[str]:
        """The fields in which ``new`` differs from this run's config and that may not change when the
        run is resumed (:data:`RESUMABLE`; ``out`` is where the run is and is not compared)."""
        changed = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(new, f.name)]
        return [k for k in changed if k != "out" and (k not in RESUMABLE or (k == "steps" and self.online))]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        loss = AFSFTConfig(**d.pop("loss", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(loss=loss, **d)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        d = json.loads(Path(path).read_text())
        d.setdefault("backward_lanes", False)  # a run saved before lanes existed used single turns
        return cls.from_dict(d)

    @property
    def uses_lanes(self) -> bool:
        """Whether batches come from backward lanes (``backward_lanes``, its default resolved)."""
        if self.backward_lanes is not None:
            return self.backward_lanes
        return self.segment_turns == 1 and self.loss.critic_coef != 0

    @property
    def total_steps(self) -> int:
        return self.steps + (self.online_rounds * self.online_steps if self.online else 0)


RESUMABLE = frozenset({
    "steps", "online_rounds", "online_episodes", "eval_every", "eval_episodes", "eval_sampled",
    "eval_at_start", "rank_every", "rank_states", "log_every", "checkpoint_every", "keep_checkpoints",
    "num_envs", "collectors", "collector_device", "device", "threads", "gradient_checkpointing",
})  # fmt: skip
"""Fields a resumed run may change: its length (``steps`` only before an online phase; a longer run
stretches the cosine schedule from there on), bookkeeping and hardware. The rest define the run."""

RANGES: dict[str, dict[str, float]] = {
    # TrainConfig
    "seed": {"ge": 0}, "tau": {"gt": 0, "le": 1}, "lr": {"gt": 0}, "weight_decay": {"ge": 0},
    "batch_size": {"ge": 1}, "grad_accum": {"ge": 1}, "segment_turns": {"ge": 1}, "steps": {"ge": 0}, "warmup_steps": {"ge": 0},
    "lr_min_ratio": {"ge": 0, "le": 1}, "filter_warmup_steps": {"ge": 0}, "grad_clip": {"ge": 0},
    "lora_r": {"ge": 1}, "lora_alpha": {"gt": 0}, "critic_init_bias": {}, "critic_init_std": {"ge": 0},
    "max_new_tokens": {"ge": 1}, "log_every": {"ge": 1}, "eval_every": {"ge": 0}, "eval_episodes": {"ge": 0},
    "eval_seed": {"ge": 0}, "rank_every": {"ge": 0}, "rank_states": {"ge": 1}, "checkpoint_every": {"ge": 1},
    "keep_checkpoints": {"ge": 1}, "online_rounds": {"ge": 1}, "online_episodes": {"ge": 1},
    "online_steps": {"ge": 0}, "num_envs": {"ge": 1}, "temperature": {"ge": 0}, "replay_capacity": {"ge": 1},
    "online_fraction": {"ge": 0, "le": 1}, "collectors": {"ge": 0}, "threads": {"ge": 1},
    # AFSFTConfig (the ``loss`` field)
    "threshold": {}, "beta": {"gt": 0}, "w_max": {"gt": 0}, "gamma": {"ge": 0, "le": 1},
    "gamma_token": {"ge": 0, "le": 1}, "critic_coef": {"ge": 0}, "huber_delta": {"gt": 0},
    "turn_lambda": {"ge": 0, "le": 1}, "forced_prob": {"gt": 0, "le": 1}, "reward_scale": {},
    "conservative": {"ge": 0},
}  # fmt: skip
"""Valid range of every number field (bounds ``gt``, ``ge``, ``le``; ``{}``: any finite number), checked
by the ``vlmq train`` parser (:func:`vlmq.cli_errors.number`)."""
