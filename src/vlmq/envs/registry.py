"""String ids -> environment constructors, e.g. ``make("gym_cards/NumberLine")``.

Each domain module registers its tasks when imported (every BabyAI level of the installed minigrid,
every task of the installed miniwob); the registry imports a domain on the first ``spec``/``make`` of
one of its ids. Importing a domain never imports selenium or starts a browser.

Every registered id is also a gymnasium id: ``gymnasium.make("vlmq/gym_cards.NumberLine", **kw)``
returns the same (unwrapped) environment as ``make("gym_cards/NumberLine", **kw)``. gymnasium's id
grammar allows one ``/`` (``namespace/name``), hence ``vlmq/<domain>.<Task>`` (see :func:`gym_id`).
``import vlmq.envs`` registers the gymnasium ids of every installed domain (:func:`register_gymnasium`),
which imports minigrid and miniwob (about 0.2 s).

Ids may have aliases (``babyai/BabyAI-GoToSeq-v0`` for ``babyai/GoToSeq``), accepted by ``spec``/``make``
and never listed. ``EnvSpec.featured`` tasks form the short default listing (``vlmq envs``); the
others appear with ``vlmq envs --all`` (:func:`listing`).
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium

from vlmq.envs.base import TextEnv

# domain name -> module that registers its tasks on import
DOMAIN_MODULES: dict[str, str] = {
    "gym_cards": "vlmq.envs.gym_cards",
    "babyai": "vlmq.envs.babyai",
    "miniwob": "vlmq.envs.miniwob",
}
GYM_NAMESPACE = "vlmq"


@dataclass(frozen=True)
class EnvSpec:
    env_id: str
    factory: Callable[..., TextEnv]
    description: str = ""
    workers: bool = False
    """Several copies run in subprocess workers by default: steps are slow (e.g. a browser), so
    stepping copies in parallel pays for the process start-up and pickling. Light envs stay in-process."""
    featured: bool = True
    """Shown by the default (short) ``vlmq envs`` listing; the rest need ``--all``."""
    expert: bool = True
    """A scripted expert that solves the task (at least sometimes; ``note`` says how well)."""
    note: str = ""
    """Caveat shown by ``vlmq envs``: the expert's limits, actions the task needs that are missing."""

    @property
    def domain(self) -> str:
        return self.env_id.split("/", 1)[0]

    @property
    def task(self) -> str:
        return self.env_id.split("/", 1)[1]

    @property
    def gym_id(self) -> str:
        return gym_id(self.env_id)


_REGISTRY: dict[str, EnvSpec] = {}
_ALIASES: dict[str, str] = {}


class UnknownEnvError(KeyError):
    """An env id or domain that is not registered; the message suggests close ids."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def gym_id(env_id: str) -> str:
    """The gymnasium id of a vlmq id: ``"babyai/GoToSeq"`` -> ``"vlmq/babyai.GoToSeq"``."""
    return f"{GYM_NAMESPACE}/{env_id.replace('/', '.', 1)}"


def register(
    env_id: str,
    factory: Callable[..., TextEnv],
    description: str = "",
    workers: bool = False,
    *,
    featured: bool = True,
    expert: bool = True,
    note: str = "",
    aliases: tuple[str, ...] = (),
) -> None:
    """Register ``factory`` under ``"domain/Task"`` (fields: see :class:`EnvSpec`) and its ``aliases``."""
    if "/" not in env_id:
        raise ValueError(f"env id must look like 'domain/Task', got {env_id!r}")
    _REGISTRY[env_id] = EnvSpec(env_id, factory, description, workers, featured, expert, note)
    for alias in aliases:
        _ALIASES[alias] = env_id
    _register_gym_id(env_id)


def _register_gym_id(env_id: str) -> str:
    """Register ``env_id`` with gymnasium as ``vlmq/<domain>.<Task>`` (once) and return that id."""
    gid = gym_id(env_id)
    if gid not in gymnasium.registry:
        gymnasium.register(
            gid,
            entry_point=f"{__name__}:_gym_entry",
            kwargs={"vlmq_env_id": env_id},
            order_enforce=False,
            disable_env_checker=True,
        )
    return gid


def _load_domain(domain: str) -> None:
    module = DOMAIN_MODULES.get(domain)
    if module is None:
        raise UnknownEnvError(
            f"unknown domain {domain!r}; known domains: {', '.join(sorted(DOMAIN_MODULES))}"
        )
    importlib.import_module(module)


def spec(env_id: str) -> EnvSpec:
    """Look up an env id (or alias), importing its domain on first use.

    Raises :class:`UnknownEnvError` (a ``KeyError``) suggesting close ids.
    """
    if "/" not in env_id:  # a bare alias such as minigrid's "BabyAI-GoToSeq-v0"
        list_envs()
        if env_id not in _ALIASES:
            raise UnknownEnvError(f"unknown env {env_id!r}; env ids look like 'domain/Task'")
    elif env_id not in _REGISTRY and env_id not in _ALIASES:
        _load_domain(env_id.split("/", 1)[0])
    env_id = _ALIASES.get(env_id, env_id)
    if env_id not in _REGISTRY:
        domain = env_id.split("/", 1)[0]
        known = sorted(k for k in _REGISTRY if k.startswith(domain + "/"))
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        shown = ", ".join(known) if len(known) <= 12 else f"`vlmq envs {domain} --all` lists all {len(known)}"
        raise UnknownEnvError(f"unknown env {env_id!r}; {hint}{domain} tasks: {shown}")
    return _REGISTRY[env_id]


def make(env_id: str, **kwargs: Any) -> TextEnv:
    """Build an environment by id, e.g. ``make("gym_cards/Blackjack")``."""
    return spec(env_id).factory(**kwargs)


def list_envs(domain: str | None = None, featured_only: bool = False) -> list[EnvSpec]:
    """Registered tasks (importing every domain whose dependencies are installed), sorted by id."""
    for d in [domain] if domain else DOMAIN_MODULES:
        try:
            _load_domain(d)
        except ImportError:
            continue
    return sorted(
        (s for s in _REGISTRY.values() if domain in (None, s.domain) and (s.featured or not featured_only)),
        key=lambda s: s.env_id,
    )


def listing(domain: str | None = None, show_all: bool = False, width: int = 120) -> list[str]:
    """The lines ``vlmq envs`` prints: per domain, one line per task: id, ``expert`` or ``-`` (no
    scripted expert), one-line description and note. Without ``show_all`` only featured tasks, with
    a count of the hidden ones per domain."""
    specs = list_envs(domain)
    lines: list[str] = []
    for d in sorted({s.domain for s in specs}):
        in_domain = [s for s in specs if s.domain == d]
        shown = in_domain if show_all else [s for s in in_domain if s.featured]
        experts = sum(s.expert for s in in_domain)
        lines.append(f"{d}: {len(in_domain)} tasks, {experts} with a scripted expert")
        id_width = max(len(s.env_id) for s in shown) + 2 if shown else 0
        for s in shown:
            note = f" ({s.note})" if s.note else ""
            room = max(20, width - id_width - 10 - len(note))  # the note is never cut
            text = s.description if len(s.description) <= room else s.description[: room - 3].rstrip() + "..."
            text += note
            lines.append(f"  {s.env_id:<{id_width}}{'expert' if s.expert else '-':<8}{text}")
        hidden = len(in_domain) - len(shown)
        if hidden:
            lines.append(f"  ... and {hidden} more (`vlmq envs {d} --all`)")
    return lines


def doc_description(doc: str | None) -> str:
    """The first sentence of a ``## Description`` section (minigrid/miniwob docstrings), one line."""
    if not doc:
        return ""
    m = re.search(r"##\s*Description\s*\n(.*?)(?:\n\s*\n|\n\s*##|$)", doc, flags=re.S)
    para = (m.group(1) if m else doc.strip().split("\n\n", 1)[0]).strip()
    sentence = re.split(r"(?<=\.)\s+|\n(?=\s*[A-Z])", para)[0]  # a wrapped line without its period
    return " ".join(sentence.split()).rstrip(".") + "."


def _gym_entry(vlmq_env_id: str, **kwargs: Any) -> TextEnv:
    """gymnasium entry point of every vlmq id."""
    return make(vlmq_env_id, **kwargs)


def register_gymnasium() -> list[str]:
    """Register every installed task with gymnasium as ``vlmq/<domain>.<Task>``; return the ids.

    ``gymnasium.make`` then returns the :class:`TextEnv` itself (no env checker, order-enforcing or
    time-limit wrapper: episodes end by the env's own ``max_turns``). Idempotent; :func:`register`
    also registers each new id as it comes.
    """
    return [_register_gym_id(s.env_id) for s in list_envs()]
