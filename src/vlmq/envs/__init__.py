"""Environments: the text-action protocol, a registry and the domains."""

from vlmq.envs.base import Observation, TaskInfo, TextEnv, Transition
from vlmq.envs.registry import EnvSpec, gym_id, list_envs, listing, make, register, register_gymnasium, spec
from vlmq.envs.vector import VectorEnv

register_gymnasium()  # gymnasium.make("vlmq/<domain>.<Task>") for every installed domain

__all__ = [
    "EnvSpec",
    "Observation",
    "TaskInfo",
    "TextEnv",
    "Transition",
    "VectorEnv",
    "gym_id",
    "list_envs",
    "listing",
    "make",
    "register",
    "register_gymnasium",
    "spec",
]
