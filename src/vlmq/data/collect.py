"""Collectors: run N environments in parallel with a scripted policy or a model, record episodes.

Scripted policies (``random``, ``expert``, ``noisy``) ask each env for its action and "write" it as
``format_response(action)``. The ``model`` policy batches the observations of all running envs into
ONE ``policy.generate`` call per step; ``parse_agent`` extracts the action (``""`` when it finds none,
which the env scores as invalid) and the turn keeps the sampled token ids and whether the generation
finished, so the learner trains on exactly those tokens. Episode ``k`` is reset with seed ``seed + k``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmq.data.schema import Episode, Turn
from vlmq.data.store import EpisodeStore
from vlmq.utils.progress import progress_bar

SCRIPTED = ("random", "expert", "noisy")


@dataclass
class CollectStats:
    """What a collection run did."""

    episodes: int = 0
    steps: int = 0
    successes: int = 0
    strict_successes: int = 0
    valid_steps: int = 0
    total_return: float = 0.0
    wall_s: float = 0.0
    samples: list[str] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)

    def add(self, ep: Episode) -> None:
        self.episodes += 1
        self.steps += len(ep.turns)
        self.successes += ep.success
        self.strict_successes += ep.strict_success
        self.valid_steps += sum(t.valid for t in ep.turns)
        self.total_return += ep.episode_return
        self.returns.append(ep.episode_return)

    def metrics(self) -> dict[str, float]:
        n, s = max(self.episodes, 1), max(self.steps, 1)
        return {
            "episodes": float(self.episodes),
            "success_rate": self.successes / n,
            "strict_success_rate": self.strict_successes / n,
            "mean_return": self.total_return / n,
            "valid_rate": self.valid_steps / s,
            "mean_length": self.steps / n,
            "steps_per_s": self.steps / self.wall_s if self.wall_s > 0 else 0.0,
            "episodes_per_s": self.episodes / self.wall_s if self.wall_s > 0 else 0.0,
        }

    def summary(self) -> str:
        m = self.metrics()
        return (
            f"episodes {self.episodes}  success {m['success_rate']:.3f}  return {m['mean_return']:.3f}  "
            f"valid {m['valid_rate']:.3f}  ({m['episodes_per_s']:.1f} episodes/s, {m['steps_per_s']:.0f} steps/s)"
        )


def source_name(policy: str, epsilon: float, model_name: str | None = None) -> str:
    """The ``source`` recorded with each episode: ``random``, ``expert``, ``noisy:0.2``, ``model:<name>``."""
    if policy == "noisy":
        return f"noisy:{epsilon:g}"
    if policy == "model":
        return f"model:{model_name or 'policy'}"
    return policy


def collect(
    env_id: str,
    policy: str = "random",
    episodes: int = 100,
    *,
    num_envs: int = 1,
    seed: int = 0,
    epsilon: float = 0.2,
    model: Any = None,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    cot: bool = False,
    out: str | Path | EpisodeStore | None = None,
    shard_episodes: int = 64,
    asynchronous: bool | None = None,
    env_kwargs: dict[str, Any] | None = None,
    source: str | None = None,
    show_progress: bool = True,
    max_samples: int = 8,
) -> CollectStats:
    """Collect ``episodes`` episodes of ``env_id`` (see module docstring); store them in ``out`` if given.

    ``policy`` is ``random``, ``expert``, ``noisy`` (``epsilon``-noisy expert) or ``model`` (``model``
    is a :class:`~vlmq.models.policy.Policy`; ``temperature == 0`` is greedy). Completed episodes are
    appended ``shard_episodes`` at a time, so an interrupted collection keeps what it finished.
    ``asynchronous``: envs in subprocess workers (``None``: the env's default, see ``EnvSpec.workers``).
    """
    from vlmq.envs.vector import VectorEnv
    from vlmq.models.prompts import build_prompt, format_response, parse_agent

    if policy not in (*SCRIPTED, "model"):
        raise ValueError(f"unknown policy {policy!r}; choose random, expert, noisy or model")
    if policy == "model" and model is None:
        raise ValueError("policy 'model' needs a model")
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    store = out if isinstance(out, EpisodeStore) or out is None else EpisodeStore(out, create=True)
    tag = source or source_name(policy, epsilon, getattr(getattr(model, "config", None), "base_model", None))
    n = max(1, min(num_envs, episodes))
    stats = CollectStats()
    pending: list[Episode] = []
    run_id = secrets.token_hex(3)
    t0 = time.perf_counter()
    bar = progress_bar(total=episodes, desc=f"collect {env_id}", disable=not show_progress, unit="ep")
    venv = VectorEnv(env_id, n, asynchronous=asynchronous, env_kwargs=env_kwargs)
    try:
        task = venv.call("task_info", indices=[0])[0]
        started = 0
        slot_ep: dict[int, Episode] = {}
        slot_obs: dict[int, dict[str, Any]] = {}

        def start(slots: list[int]) -> None:
            nonlocal started
            seeds = list(range(seed + started, seed + started + len(slots)))
            for i, (obs, _info) in zip(slots, venv.reset(seeds=seeds, indices=slots), strict=True):
                k = seeds[slots.index(i)]
                slot_ep[i] = Episode(f"{tag}-{run_id}-{k}", env_id, tag, k)
                slot_obs[i] = obs
            started += len(slots)

        start(list(range(min(n, episodes))))
        while slot_ep:
            active = sorted(slot_ep)
            prompts = [build_prompt(task, slot_obs[i]["text"], cot=cot) for i in active]
            ids: list[list[int] | None] = [None] * len(active)
            done: list[bool | None] = [None] * len(active)
            if policy == "model":
                gens = model.generate(
                    [slot_obs[i]["image"] for i in active],
                    prompts,
                    temperature=temperature,  # <= 0: greedy
                    max_new_tokens=max_new_tokens,
                )
                responses = [g.text for g in gens]
                ids = [[int(t) for t in g.token_ids] for g in gens]
                done = [bool(g.finished) for g in gens]
                actions = [parse_agent(r) or "" for r in responses]
                for r, a in zip(responses, actions, strict=True):
                    if len(stats.samples) < max_samples:
                        stats.samples.append(f"{r!r} -> {a!r}")
            else:
                actions = venv.call("scripted_action", policy, epsilon, indices=active)
                responses = [format_response(a) for a in actions]
            results = venv.step(actions, indices=active)
            finished: list[int] = []
            for i, prompt, resp, resp_ids, resp_done, (obs, reward, term, trunc, info) in zip(
                active, prompts, responses, ids, done, results, strict=True
            ):
                ep = slot_ep[i]
                ep.turns.append(
                    Turn(
                        image=slot_obs[i]["image"],
                        obs_text=slot_obs[i]["text"],
                        prompt=prompt,
                        response=resp,
                        action=info.get("parsed_action"),
                        valid=bool(info.get("valid", True)),
                        reward=float(reward),
                        terminated=bool(term),
                        truncated=bool(trunc),
                        response_ids=resp_ids,
                        response_finished=resp_done,
                    )
                )
                ep.strict_success = ep.strict_success or bool(info.get("strict_success"))
                slot_obs[i] = obs
                if term or trunc:
                    ep.success = bool(info.get("success", ep.episode_return > 0))
                    ep.final_image = obs["image"]
                    ep.final_prompt = build_prompt(task, obs["text"], cot=cot)
                    stats.add(ep)
                    pending.append(ep)
                    del slot_ep[i]
                    finished.append(i)
            if store is not None and len(pending) >= shard_episodes:
                store.append(pending)
                pending = []
            if finished:
                bar.update(len(finished))
                stats.wall_s = time.perf_counter() - t0
                m = stats.metrics()
                bar.set_postfix(
                    success=f"{m['success_rate']:.2f}",
                    valid=f"{m['valid_rate']:.2f}",
                    steps_s=f"{m['steps_per_s']:.0f}",
                )
                more = finished[: max(0, episodes - started)]
                if more:
                    start(more)
        if store is not None:
            store.append(pending)
    finally:
        venv.close()
        bar.close()
    stats.wall_s = time.perf_counter() - t0
    return stats
