"""Environments: the text-action protocol, a registry and the domains."""

from vlmq.envs.base import Observation, TaskInfo, TextEnv, Transition
from vlmq.envs.registry import EnvSpec, list_envs, make, register, spec
from vlmq.envs.vector import VectorEnv

__all__ = [
    "EnvSpec",
    "Observation",
    "TaskInfo",
    "TextEnv",
    "Transition",
    "VectorEnv",
    "list_envs",
    "make",
    "register",
    "spec",
]
