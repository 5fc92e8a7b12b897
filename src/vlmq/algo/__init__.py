"""The AFSFT losses: pure functions on tensors (no models, no data)."""

from vlmq.algo.afsft import (
    AFSFTConfig,
    LossOutput,
    actor_loss,
    advantages,
    afsft_loss,
    conservative_penalty,
    critic_loss,
    filter_weights,
    state_values,
    td_targets,
)

__all__ = [
    "AFSFTConfig",
    "LossOutput",
    "actor_loss",
    "advantages",
    "afsft_loss",
    "conservative_penalty",
    "critic_loss",
    "filter_weights",
    "state_values",
    "td_targets",
]
