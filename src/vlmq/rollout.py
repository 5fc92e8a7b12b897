"""The episode loop: N environments side by side, driven by one agent, measured by one stats type.

Every episode any command runs goes through :func:`rollout`: ``vlmq play`` (:func:`play`: scripted,
nothing stored), ``vlmq collect`` (:func:`collect`: stored in a dataset), evaluation
(:func:`vlmq.train.evaluate.evaluate_policy`) and online collection (the learner's synchronous rounds
and :mod:`vlmq.train.collector`).

An :class:`Agent` turns the observations of the running envs into one :class:`Decision` each:
:class:`ScriptedAgent` asks each env for its ``random``/``expert``/``noisy`` action and writes it as
``format_response(action)``; :class:`ModelAgent` batches the observations into ONE
``policy.generate`` call per step, ``parse_agent`` extracts the action (``""`` when there is none,
which the env scores as invalid) and the turn keeps the sampled token ids and whether the generation
finished, so the learner trains on exactly those tokens.

Episode ``k`` (0, 1, ...) is reset with seed ``seed + k``; when an env finishes an episode it starts
the next one, so the episodes and their results do not depend on ``num_envs``. Speed (``wall_s``,
``steps_per_s``) is wall-clock time of the loop, agent and resets included; env start-up (worker
spawn and the first reset of each env, e.g. a browser launch) and frame writing excluded.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from vlmq.data.schema import Episode, Turn
from vlmq.data.store import EpisodeStore
from vlmq.envs.base import Observation, TaskInfo
from vlmq.envs.vector import VectorEnv
from vlmq.models.prompts import build_prompt, format_response, parse_agent
from vlmq.utils.io import atomic_write_text
from vlmq.utils.progress import progress_bar

SCRIPTED: tuple[str, ...] = ("random", "expert", "noisy")
"""The scripted policies every env implements (``TextEnv.scripted_action``)."""


# --------------------------------------------------------------------------- agents


@dataclass
class Decision:
    """What an agent wrote for one env: the action text sent to the env and the response recorded.

    ``response_ids``/``response_finished``: the token ids a model sampled and whether it stopped by
    itself (``None`` for scripted turns). ``note``: a line for :attr:`RolloutStats.samples`.
    """

    action: str
    response: str
    response_ids: list[int] | None = None
    response_finished: bool | None = None
    note: str | None = None


class Agent(Protocol):
    """Anything that acts in a :class:`~vlmq.envs.vector.VectorEnv`: scripted or a model."""

    source: str
    """Recorded with each episode: ``random``, ``expert``, ``noisy:0.2``, ``model:<name>``."""
    needs_prompts: bool
    """Whether :meth:`act` reads the prompts (else the loop builds them only to store them)."""

    def act(
        self, venv: VectorEnv, indices: list[int], observations: list[Observation], prompts: list[str] | None
    ) -> list[Decision]:
        """One decision per env in ``indices`` (ascending), given its observation and prompt."""
        ...


def source_name(policy: str, epsilon: float, model_name: str | None = None) -> str:
    """The ``source`` recorded with each episode: ``random``, ``expert``, ``noisy:0.2``, ``model:<name>``."""
    if policy == "noisy":
        return f"noisy:{epsilon:g}"
    if policy == "model":
        return f"model:{model_name or 'policy'}"
    return policy


class ScriptedAgent:
    """The envs' own ``random``, ``expert`` or ``noisy`` (``epsilon``-noisy expert) actions."""

    needs_prompts = False

    def __init__(self, policy: str, epsilon: float = 0.2) -> None:
        if policy not in SCRIPTED:
            raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(SCRIPTED)}")
        self.policy, self.epsilon = policy, float(epsilon)
        self.source = source_name(policy, epsilon)

    def act(
        self, venv: VectorEnv, indices: list[int], observations: list[Observation], prompts: list[str] | None
    ) -> list[Decision]:
        actions = venv.call("scripted_action", self.policy, self.epsilon, indices=indices)
        return [Decision(a, format_response(a)) for a in actions]


class ModelAgent:
    """A :class:`~vlmq.models.policy.Policy` (or anything with its ``generate``): one batched call per
    step, ``temperature <= 0`` greedy."""

    needs_prompts = True

    def __init__(self, model: Any, temperature: float = 1.0, max_new_tokens: int | None = None) -> None:
        self.model, self.temperature, self.max_new_tokens = model, temperature, max_new_tokens
        self.source = source_name("model", 0.0, getattr(getattr(model, "config", None), "base_model", None))

    def act(
        self, venv: VectorEnv, indices: list[int], observations: list[Observation], prompts: list[str] | None
    ) -> list[Decision]:
        assert prompts is not None
        gens = self.model.generate(
            [o["image"] for o in observations],
            prompts,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
        )
        out = []
        for g in gens:
            action = parse_agent(g.text) or ""
            ids = [int(t) for t in g.token_ids]
            out.append(Decision(action, g.text, ids, bool(g.finished), note=f"{g.text!r} -> {action!r}"))
        return out


def make_agent(
    policy: str, *, epsilon: float = 0.2, model: Any = None, temperature: float = 1.0,
    max_new_tokens: int | None = None,
) -> Agent:  # fmt: skip
    """The agent for a policy name: one of :data:`SCRIPTED`, or ``model`` (needs ``model``)."""
    if policy == "model":
        if model is None:
            raise ValueError("policy 'model' needs a model")
        return ModelAgent(model, temperature, max_new_tokens)
    if policy not in SCRIPTED:
        raise ValueError(f"unknown policy {policy!r}; choose random, expert, noisy or model")
    return ScriptedAgent(policy, epsilon)


# --------------------------------------------------------------------------- statistics


@dataclass
class RolloutStats:
    """What a rollout did: counts, rates in [0, 1] and speed (see the module docstring)."""

    env_id: str = ""
    source: str = ""
    seed: int = 0
    episodes: int = 0
    steps: int = 0
    successes: int = 0  # episode over and summed reward > 0 (the RL4VLM rule), unless the env says
    strict_successes: int = 0  # task-specific (target reached, formula correct, hand won, ...)
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

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.episodes, 1)

    @property
    def strict_success_rate(self) -> float:
        return self.strict_successes / max(self.episodes, 1)

    @property
    def mean_return(self) -> float:
        return self.total_return / max(self.episodes, 1)

    @property
    def valid_rate(self) -> float:
        """Share of steps whose action the env accepted (the valid-action rate)."""
        return self.valid_steps / max(self.steps, 1)

    @property
    def mean_length(self) -> float:
        return self.steps / max(self.episodes, 1)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.wall_s if self.wall_s > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """The numbers logged and written as JSON (``eval``, training logs, collector logs)."""
        return {
            "episodes": float(self.episodes),
            "success_rate": self.success_rate,
            "strict_success_rate": self.strict_success_rate,
            "mean_return": self.mean_return,
            "valid_rate": self.valid_rate,
            "mean_length": self.mean_length,
            "steps_per_s": self.steps_per_s,
            "episodes_per_s": self.episodes_per_s,
        }

    def as_dict(self) -> dict[str, Any]:
        """What was run and its results, without the per-episode lists; timing only as ``steps_per_s``."""
        return {
            "env_id": self.env_id,
            "source": self.source,
            "seed": self.seed,
            "episodes": self.episodes,
            "steps": self.steps,
            "success_rate": self.success_rate,
            "strict_success_rate": self.strict_success_rate,
            "mean_return": self.mean_return,
            "valid_rate": self.valid_rate,
            "mean_length": self.mean_length,
            "steps_per_s": self.steps_per_s,
        }

    def summary(self) -> str:
        """One line."""
        return (
            f"episodes {self.episodes}  success {self.success_rate:.3f}  return {self.mean_return:.3f}  "
            f"valid {self.valid_rate:.3f}  ({self.episodes_per_s:.1f} episodes/s, {self.steps_per_s:.0f} steps/s)"
        )

    def report(self) -> str:
        """A short human-readable table."""
        return "\n".join(
            [
                f"{self.env_id}: {self.source}, {self.episodes} episodes from seed {self.seed}",
                f"  success rate         {100 * self.success_rate:6.1f} %",
                f"  strict success rate  {100 * self.strict_success_rate:6.1f} %",
                f"  mean return          {self.mean_return:8.3f}",
                f"  valid-action rate    {100 * self.valid_rate:6.1f} %",
                f"  mean episode length  {self.mean_length:8.2f}",
                f"  env steps/s          {self.steps_per_s:8.0f}",
            ]
        )


# --------------------------------------------------------------------------- the loop


class FrameLog:
    """The first episode as ``frame_000.png, frame_001.png, ...`` (frame 0 the reset observation,
    frame t the one after action t) and ``episode.txt`` (each frame's text, the action, the reward)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.lines: list[str] = []

    def _save(self, index: int, image: Any) -> str:
        name = f"frame_{index:03d}.png"
        Image.fromarray(image).save(self.dir / name)
        return name

    def reset(self, obs: Observation) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lines.append(f"[{self._save(0, obs['image'])}]\n{obs['text']}\n")

    def step(self, t: int, action: str, reward: float, info: dict[str, Any], terminated: bool,
             truncated: bool, obs: Observation) -> None:  # fmt: skip
        name = self._save(t, obs["image"])
        self.lines.append(
            f"action: {action!r}  reward: {reward:g}  valid: {info.get('valid')}  "
            f"terminated: {terminated}  truncated: {truncated}\n\n[{name}]\n{obs['text']}\n"
        )

    def close(self) -> None:
        atomic_write_text(self.dir / "episode.txt", "\n".join(self.lines))


def rollout(
    env_id: str,
    agent: Agent,
    episodes: int,
    *,
    num_envs: int = 1,
    seed: int = 0,
    cot: bool = False,
    asynchronous: bool | None = None,
    env_kwargs: dict[str, Any] | None = None,
    source: str | None = None,
    on_finished: Callable[[list[Episode]], None] | None = None,
    max_steps: int | None = None,
    frames: FrameLog | None = None,
    show_progress: bool = False,
    desc: str | None = None,
    max_samples: int = 8,
) -> RolloutStats:
    """Run ``episodes`` episodes of ``env_id`` with ``agent`` on ``num_envs`` envs (see module docstring).

    ``on_finished`` receives the episodes finished by each env step (in env order); their turns then
    carry their prompts (``cot``: the reasoning format) and the final observation. ``source`` names
    the episodes (default ``agent.source``). ``max_steps`` ends longer episodes (truncated).
    ``asynchronous``: envs in subprocess workers (``None``: the env's default, ``EnvSpec.workers``).
    """
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    tag = source or agent.source
    keep = on_finished is not None
    with_prompts = keep or agent.needs_prompts
    n = max(1, min(num_envs, episodes))
    stats = RolloutStats(env_id=env_id, source=tag, seed=seed)
    run_id = secrets.token_hex(3)
    bar = progress_bar(total=episodes, desc=desc or f"{env_id} {tag}", disable=not show_progress, unit="ep")
    venv = VectorEnv(env_id, n, asynchronous=asynchronous, env_kwargs=env_kwargs)
    try:
        task: TaskInfo | None = venv.call("task_info", indices=[0])[0] if with_prompts else None
        started = 0
        slot_ep: dict[int, Episode] = {}
        slot_obs: dict[int, Observation] = {}
        untimed = 0.0  # frame writing

        def prompt(obs: Observation) -> str:
            return build_prompt(task, obs["text"], cot=cot) if task is not None else ""

        def start(slots: list[int]) -> None:
            nonlocal started, untimed
            seeds = list(range(seed + started, seed + started + len(slots)))
            for i, k, (obs, _info) in zip(slots, seeds, venv.reset(seeds=seeds, indices=slots), strict=True):
                slot_ep[i] = Episode(f"{tag}-{run_id}-{k}", env_id, tag, k)
                slot_obs[i] = obs
                if frames is not None and k == seed:
                    ts = time.perf_counter()
                    frames.reset(obs)
                    untimed += time.perf_counter() - ts
            started += len(slots)

        start(list(range(n)))  # env start-up (browser launch etc.): not timed
        untimed = 0.0
        t0 = time.perf_counter()
        while slot_ep:
            active = sorted(slot_ep)
            observations = [slot_obs[i] for i in active]
            prompts = [prompt(o) for o in observations] if with_prompts else None
            decisions = agent.act(venv, active, observations, prompts)
            for d in decisions:
                if d.note is not None and len(stats.samples) < max_samples:
                    stats.samples.append(d.note)
            results = venv.step([d.action for d in decisions], indices=active)
            finished: list[int] = []
            done_eps: list[Episode] = []
            for j, (i, d, (obs, reward, term, trunc, info)) in enumerate(
                zip(active, decisions, results, strict=True)
            ):
                ep = slot_ep[i]
                cut = max_steps is not None and len(ep.turns) + 1 >= max_steps and not (term or trunc)
                ep.turns.append(
                    Turn(
                        image=observations[j]["image"],
                        obs_text=observations[j]["text"],
                        prompt=prompts[j] if prompts is not None else "",
                        response=d.response,
                        action=info.get("parsed_action"),
                        valid=bool(info.get("valid", True)),
                        reward=float(reward),
                        terminated=bool(term),
                        truncated=bool(trunc) or cut,
                        response_ids=d.response_ids,
                        response_finished=d.response_finished,
                    )
                )
                ep.strict_success = ep.strict_success or bool(info.get("strict_success"))
                slot_obs[i] = obs
                if frames is not None and ep.seed == seed:
                    ts = time.perf_counter()
                    frames.step(len(ep.turns), d.action, reward, info, term, trunc, obs)
                    untimed += time.perf_counter() - ts
                if term or trunc or cut:
                    ep.success = bool(info.get("success", ep.episode_return > 0))
                    if keep:
                        ep.final_image = obs["image"]
                        ep.final_prompt = prompt(obs)
                    stats.add(ep)
                    done_eps.append(ep)
                    del slot_ep[i]
                    finished.append(i)
            if finished:
                if on_finished is not None:
                    on_finished(done_eps)
                bar.update(len(finished))
                stats.wall_s = time.perf_counter() - t0 - untimed
                bar.set_postfix(
                    success=f"{stats.success_rate:.2f}",
                    valid=f"{stats.valid_rate:.2f}",
                    steps_s=f"{stats.steps_per_s:.0f}",
                )
                more = finished[: max(0, episodes - started)]
                if more:
                    start(more)
        stats.wall_s = time.perf_counter() - t0 - untimed
    finally:
        venv.close()
        bar.close()
    if frames is not None:
        frames.close()
    return stats


# --------------------------------------------------------------------------- the commands' entry points


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
) -> RolloutStats:
    """Collect ``episodes`` episodes of ``env_id``; store them in ``out`` if given.

    ``policy`` is ``random``, ``expert``, ``noisy`` (``epsilon``-noisy expert) or ``model`` (``model``
    is a :class:`~vlmq.models.policy.Policy`; ``temperature == 0`` is greedy). Completed episodes are
    appended once ``shard_episodes`` of them are waiting, so an interrupted collection keeps what it
    finished.
    """
    agent = make_agent(
        policy, epsilon=epsilon, model=model, temperature=temperature, max_new_tokens=max_new_tokens
    )
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    store = out if isinstance(out, EpisodeStore) or out is None else EpisodeStore(out, create=True)
    pending: list[Episode] = []

    def keep(eps: list[Episode]) -> None:
        nonlocal pending
        pending += eps
        if store is not None and len(pending) >= shard_episodes:
            store.append(pending)
            pending = []

    stats = rollout(
        env_id, agent, episodes, num_envs=num_envs, seed=seed, cot=cot, asynchronous=asynchronous,
        env_kwargs=env_kwargs, source=source, on_finished=keep, show_progress=show_progress,
        desc=f"collect {env_id}", max_samples=max_samples,
    )  # fmt: skip
    if store is not None:
        store.append(pending)
    return stats


def play(
    env_id: str,
    policy: str = "expert",
    episodes: int = 100,
    seed: int = 0,
    epsilon: float = 0.2,
    save_frames: Path | str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    max_steps: int = 1000,
    num_envs: int = 1,
) -> RolloutStats:
    """Run ``episodes`` seeded episodes of a scripted ``policy`` (:data:`SCRIPTED`) and measure them;
    nothing is stored. ``save_frames=DIR`` writes the first episode (:class:`FrameLog`);
    ``max_steps`` guards against envs without a time limit."""
    agent = ScriptedAgent(policy, epsilon)
    if num_envs < 1:
        raise ValueError("num_envs must be >= 1")
    frames = FrameLog(save_frames) if save_frames is not None else None
    return rollout(
        env_id, agent, episodes, num_envs=num_envs, seed=seed, env_kwargs=env_kwargs, max_steps=max_steps,
        frames=frames, show_progress=progress,
    )  # fmt: skip
