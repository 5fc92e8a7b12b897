"""VectorEnv: sync and async (subprocess) modes agree with single envs; errors are clear."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest

from vlmq.envs import VectorEnv, make

SEEDS = [3, 14, 15]


def _rollout_single(env_id: str, seeds: list[int], steps: int) -> list[list[tuple]]:
    """Per env: the reset obs, then (obs, reward, terminated, truncated) of expert steps."""
    out = []
    for seed in seeds:
        env = make(env_id)
        obs, _ = env.reset(seed=seed)
        traj: list[tuple] = [(obs["text"], obs["image"].tobytes())]
        for _ in range(steps):
            obs, r, term, trunc, _ = env.step(env.expert_action())
            traj.append((obs["text"], obs["image"].tobytes(), r, term, trunc))
            if term or trunc:
                break
        out.append(traj)
    return out


def _rollout_vector(venv: VectorEnv, seeds: list[int], steps: int) -> list[list[tuple]]:
    out: list[list[tuple]] = [[] for _ in seeds]
    for i, (obs, _) in enumerate(venv.reset(seeds=seeds)):
        out[i].append((obs["text"], obs["image"].tobytes()))
    live = list(range(len(seeds)))
    for _ in range(steps):
        if not live:
            break
        actions = venv.call("expert_action", indices=live)
        results = venv.step(actions, indices=live)
        still = []
        for i, (obs, r, term, trunc, _) in zip(live, results, strict=True):
            out[i].append((obs["text"], obs["image"].tobytes(), r, term, trunc))
            if not (term or trunc):
                still.append(i)
        live = still
    return out


@pytest.fixture(scope="module")
def async_env() -> Iterator[VectorEnv]:
    with VectorEnv("gym_cards/Points24", 3, asynchronous=True) as venv:
        yield venv


@pytest.mark.parametrize("env_id", ["gym_cards/Blackjack", "gym_cards/Points24"])
def test_sync_matches_single(env_id: str) -> None:
    with VectorEnv(env_id, 3) as venv:
        assert _rollout_vector(venv, SEEDS, 12) == _rollout_single(env_id, SEEDS, 12)


def test_async_matches_single(async_env: VectorEnv) -> None:
    assert _rollout_vector(async_env, SEEDS, 12) == _rollout_single("gym_cards/Points24", SEEDS, 12)


def test_async_call_subset_and_attributes(async_env: VectorEnv) -> None:
    async_env.reset(seeds=SEEDS)
    acts = async_env.call("scripted_action", "noisy", 0.2)
    assert len(acts) == 3 and all(isinstance(a, str) for a in acts)
    assert async_env.call("invalid_penalty") == [-1.0, -1.0, -1.0]
    before = async_env.call("formula")
    ((obs, _, _, _, info),) = async_env.step(["("], indices=[1])
    after = async_env.call("formula")
    assert after[1] == [*before[1], "("] and after[0] == before[0] and after[2] == before[2]
    assert info["valid"] and "Current formula:" in obs["text"]
    res = async_env.reset(seeds=[5], indices=[2])
    assert len(res) == 1 and res[0][0]["image"].shape == (300, 300, 3)
    single = make("gym_cards/Points24").reset(seed=5)[0]
    assert np.array_equal(res[0][0]["image"], single["image"])


def test_async_method_error_names_env(async_env: VectorEnv) -> None:
    with pytest.raises(RuntimeError, match="env index 0"):
        async_env.call("no_such_method", indices=[0])
    with pytest.raises(RuntimeError, match="ValueError"):
        async_env.call("scripted_action", "bogus")
    # the workers are still in sync afterwards
    assert len(async_env.reset(seeds=SEEDS)) == 3


def test_argument_checks() -> None:
    with pytest.raises(KeyError):
        VectorEnv("gym_cards/Nope", 2)
    with pytest.raises(ValueError):
        VectorEnv("gym_cards/NumberLine", 0)
    with VectorEnv("gym_cards/NumberLine", 2) as venv:
        with pytest.raises(ValueError):
            venv.step(["+"])
        with pytest.raises(ValueError):
            venv.reset(seeds=[1, 2, 3])
        with pytest.raises(IndexError):
            venv.step(["+"], indices=[2])
        assert len(venv) == 2 and venv.num_envs == 2
    with pytest.raises(RuntimeError, match="closed"):
        venv.reset()


def test_dead_worker_raises_and_close_is_robust() -> None:
    venv = VectorEnv("gym_cards/Blackjack", 3, asynchronous=True)
    venv.reset(seeds=SEEDS)
    procs = list(venv._procs)
    os.kill(procs[1].pid, signal.SIGKILL)
    procs[1].join(5)
    with pytest.raises(RuntimeError, match="env index 1"):
        venv.step(["stand", "stand", "stand"])
    t0 = time.monotonic()
    venv.close()
    venv.close()  # idempotent
    assert time.monotonic() - t0 < 10
    assert not any(p.is_alive() for p in procs)


def test_light_envs_run_in_process_by_default() -> None:
    with VectorEnv("gym_cards/NumberLine", 2) as venv:
        assert not venv.asynchronous and len(venv.envs) == 2
    with VectorEnv("gym_cards/NumberLine", 2, asynchronous=True) as venv:
        assert venv.asynchronous and len(venv._procs) == 2
