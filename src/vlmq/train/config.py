"""The typed configuration of a training run, saved as ``config.json`` in every run folder."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlmq.algo.afsft import AFSFTConfig
from vlmq.utils.io import atomic_write_json


@dataclass
class TrainConfig:
    """Everything that defines a run. ``vlmq train`` builds one from its options."""

    env: str
    """Environment id, e.g. ``gym_cards/NumberLine`` (prompts and evaluation)."""
    model: str
    """Base model (hub name or folder) or a saved vlmq policy folder."""
    out: str
    """Run folder: config, checkpoints, TensorBoard logs, metrics, summary and plots."""
    data: str | None = None
    """Offline dataset folder (``vlmq collect``); ``None`` = start online from scratch."""
    seed: int = 0
    loss: AFSFTConfig = field(default_factory=AFSFTConfig)

    # critic target
    target: Literal["polyak", "online"] = "polyak"
    """``polyak``: a Polyak-averaged copy of the critic head; ``online``: the detached online critic."""
    tau: float = 0.05
    """Polyak rate of the target critic per optimizer step."""

    # optimisation
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 8
    """Turns per micro-batch in each process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step. Global batch (turns per optimizer step) = ``batch_size *
    grad_accum * processes``; ``processes`` is set by ``accelerate launch --num_processes`` (1 without
    it). The same global batch on another number of processes gives the same steps (up to rounding)."""
    steps: int = 200
    """Optimizer steps of offline training."""
    warmup_steps: int = 10
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """After the warm-up: ``constant``, or ``cosine`` decay to ``lr_min_ratio * lr`` at the last step."""
    lr_min_ratio: float = 0.1
    filter_warmup_steps: int = 500
    """Steps at the start during which every logged token is imitated (filter ``none``) while the critic
    learns; the filter of ``loss`` applies after them."""
    grad_clip: float = 1.0
    bf16: bool | None = None
    """Mixed precision; ``None`` = on for CUDA, off on CPU."""

    # policy (LoRA + heads)
    lora_r: int = 16
    lora_alpha: int = 32
    dtype: str | None = None
    """Dtype of the frozen backbone weights: ``float32``, ``bfloat16`` or ``float16``; ``None`` =
    ``bfloat16`` on CUDA, ``float32`` on the CPU. LoRA adapters and the critic heads stay float32."""
    gradient_checkpointing: bool = False
    """Recompute the backbone's activations in the backward pass (less memory, about 30 % slower)."""
    critic_init_bias: float | None = None
    """Initial Q-value of every token (the critic head's bias). ``None``: the mean episode return of the
    offline data times ``loss.reward_scale`` (0 without offline data), so a logged token passes the
    binary filter when it beats the average logged behaviour (why not 0 or the lowest return:
    docs/design.md, "Why the critic starts at the data's mean return")."""
    critic_init_std: float = 0.01
    """Std of the critic head's initial weights (``N(0, std)``, seeded); 0 = zero weights, which send
    no gradient into the backbone at the start."""
    max_new_tokens: int = 24
    cot: bool = False
    """Ask for ``{"thoughts": ..., "action": ...}`` instead of ``{"action": ...}``."""

    # bookkeeping
    log_every: int = 10
    eval_every: int = 100
    """Evaluate every this many steps (and at the start and the end). Each evaluation and each online
    round also logs sample responses as text (``samples.txt``, TensorBoard), so a collapsing output
    format shows in the logs next to the valid-action rate."""
    eval_episodes: int = 20
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
    keep_checkpoints: int = 2

    # online phase
    online: bool = False
    online_rounds: int = 4
    online_episodes: int = 16
    """Episodes collected with the current policy per round."""
    online_steps: int = 50
    """Optimizer steps per round."""
    num_envs: int = 4
    temperature: float = 1.0
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
        return cls.from_dict(json.loads(Path(path).read_text()))

    @property
    def total_steps(self) -> int:
        return self.steps + (self.online_rounds * self.online_steps if self.online else 0)
