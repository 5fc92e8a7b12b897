"""String ids -> environment constructors, e.g. ``make("gym_cards/NumberLine")``.

Each domain module registers its tasks when imported. Domains are imported lazily, so that using
Gym Cards never imports minigrid or selenium.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlmq.envs.base import TextEnv

# domain name -> module that registers its tasks on import
DOMAIN_MODULES: dict[str, str] = {
    "gym_cards": "vlmq.envs.gym_cards",
    "babyai": "vlmq.envs.babyai",
    "miniwob": "vlmq.envs.miniwob",
}


@dataclass(frozen=True)
class EnvSpec:
    env_id: str
    factory: Callable[..., TextEnv]
    description: str = ""
    workers: bool = False
    """Several copies run in subprocess workers by default: steps are slow (e.g. a browser), so
    stepping copies in parallel pays for the process start-up and pickling. Light envs stay in-process."""

    @property
    def domain(self) -> str:
        return self.env_id.split("/", 1)[0]

    @property
    def task(self) -> str:
        return self.env_id.split("/", 1)[1]


_REGISTRY: dict[str, EnvSpec] = {}


class UnknownEnvError(KeyError):
    """An env id or domain that is not registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register(
    env_id: str, factory: Callable[..., TextEnv], description: str = "", workers: bool = False
) -> None:
    """Register ``factory`` under ``"domain/Task"`` (``workers``: see :attr:`EnvSpec.workers`)."""
    if "/" not in env_id:
        raise ValueError(f"env id must look like 'domain/Task', got {env_id!r}")
    _REGISTRY[env_id] = EnvSpec(env_id, factory, description, workers)


def _load_domain(domain: str) -> None:
    module = DOMAIN_MODULES.get(domain)
    if module is None:
        raise UnknownEnvError(f"unknown domain {domain!r}; known domains: {', '.join(sorted(DOMAIN_MODULES))}")
    importlib.import_module(module)


def spec(env_id: str) -> EnvSpec:
    """Look up an env id, importing its domain on first use. Raises :class:`UnknownEnvError` (a ``KeyError``) with suggestions."""
    if env_id not in _REGISTRY:
        _load_domain(env_id.split("/", 1)[0])
    if env_id not in _REGISTRY:
        domain = env_id.split("/", 1)[0]
        known = [k for k in _REGISTRY if k.startswith(domain + "/")]
        raise UnknownEnvError(f"unknown env {env_id!r}; {domain} tasks: {', '.join(sorted(known))}")
    return _REGISTRY[env_id]


def make(env_id: str, **kwargs: Any) -> TextEnv:
    """Build an environment by id, e.g. ``make("gym_cards/Blackjack")``."""
    return spec(env_id).factory(**kwargs)


def list_envs(domain: str | None = None) -> list[EnvSpec]:
    """All registered tasks (importing every domain whose dependencies are installed)."""
    for d in [domain] if domain else DOMAIN_MODULES:
        try:
            _load_domain(d)
        except ImportError:
            continue
    return sorted((s for s in _REGISTRY.values() if domain in (None, s.domain)), key=lambda s: s.env_id)
