"""Environments: the text-action protocol, a registry and the domains."""

from vlmq.envs.base import Observation, TaskInfo, TextEnv, Transition
from vlmq.envs.registry import EnvSpec, list_envs, make, register, spec

__all__ = ["EnvSpec", "Observation", "TaskInfo", "TextEnv", "Transition", "list_envs", "make", "register", "spec"]
