"""VectorEnv with subprocess workers on BabyAI and MiniWoB++ (one browser per worker)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest

from vlmq.envs import VectorEnv, make

SEEDS = [5, 11]
STEPS = 4


def _expert_rollout_single(env_id: str, seed: int, steps: int) -> list[tuple]:
    env = make(env_id)
    try:
        obs, _ = env.reset(seed=seed)
        out: list[tuple] = [(obs["text"], obs["image"].tobytes())]
        for _ in range(steps):
            obs, reward, term, trunc, _ = env.step(env.scripted_action("expert"))
            out.append((obs["text"], obs["image"].tobytes(), reward, term, trunc))
            if term or trunc:
                break
        return out
    finally:
        env.close()


def test_babyai_async_matches_single() -> None:
    env_id = "babyai/GoToLocal"
    expected = [_expert_rollout_single(env_id, s, STEPS) for s in SEEDS]
    with VectorEnv(env_id, num_envs=2, asynchronous=True) as venv:
        got: list[list[tuple]] = [[(o["text"], o["image"].tobytes())] for o, _ in venv.reset(seeds=SEEDS)]
        live = [0, 1]
        for _ in range(STEPS):
            actions = venv.call("scripted_action", "expert", indices=live)
            results = venv.step(actions, indices=live)
            for i, (obs, reward, term, trunc, _) in zip(live, results, strict=True):
                got[i].append((obs["text"], obs["image"].tobytes(), reward, term, trunc))
            live = [i for i, r in zip(live, results, strict=True) if not (r[2] or r[3])]
            if not live:
                break
        # different seeds give different episodes, and each worker matches the single env
        assert got[0][0] != got[1][0]
        assert got == expected


def test_play_num_envs_gives_the_same_episodes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vlmq.cli import app
    from vlmq.rollout import play

    one = play("babyai/GoToLocal", "noisy", episodes=6, seed=3, epsilon=0.3).as_dict()
    two = play("babyai/GoToLocal", "noisy", episodes=6, seed=3, epsilon=0.3, num_envs=2).as_dict()
    assert one.pop("steps_per_s") > 0 and two.pop("steps_per_s") > 0
    assert one.pop("mean_return") == pytest.approx(two.pop("mean_return"))  # summed in another order
    assert one == two
    out = tmp_path / "frames"
    args = ["play", "babyai/GoToLocal", "-n", "3", "--num-envs", "2", "--save-frames", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "100.0 %" in result.output
    frames = sorted(out.glob("frame_*.png"))
    assert (
        frames[0].name == "frame_000.png"
        and (out / "episode.txt").read_text().count("action:") == len(frames) - 1
    )


# --------------------------------------------------------------------------------- MiniWoB++


_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def _running(proc: psutil.Process) -> bool:
    """Still running (psutil compares pid and start time, so a reused pid is another process), no zombie."""
    try:
        return proc.is_running() and proc.status() not in _GONE
    except psutil.Error:
        return False


def _live(pids: Iterable[int]) -> set[psutil.Process]:
    out = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.status() not in _GONE:
                out.add(proc)
    return out


def _cmdline(proc: psutil.Process | int) -> str:
    try:
        return " ".join((proc if isinstance(proc, psutil.Process) else psutil.Process(proc)).cmdline())
    except (psutil.Error, ValueError):
        return ""


def _ppid(proc: psutil.Process) -> int:
    try:
        return proc.ppid()
    except psutil.Error:
        return -1


def _tree(pid: int) -> set[psutil.Process]:
    """``pid`` and its live descendants."""
    from vlmq.envs.miniwob import process_tree

    return _live(process_tree(pid))


def _browser_procs() -> set[psutil.Process]:
    """Every live chromium/chromedriver process."""
    return _live(
        p.pid for p in psutil.process_iter() if any(k in _cmdline(p) for k in ("chromium", "chromedriver"))
    )


def _wait_gone(procs: set[psutil.Process], timeout: float = 10.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running(p) for p in procs):
        time.sleep(0.1)
    return {p.pid: _cmdline(p) for p in procs if _running(p)}


def _expert_episode(venv: VectorEnv, seeds: list[int]) -> list[dict]:
    obs = [o for o, _ in venv.reset(seeds=seeds)]
    assert all(o["image"].shape == (210, 160, 3) for o in obs)
    assert obs[0]["text"] != obs[1]["text"]
    infos: list[dict] = [{}, {}]
    live = [0, 1]
    for _ in range(5):
        results = venv.step(venv.call("scripted_action", "expert", indices=live), indices=live)
        for i, (_, _, term, trunc, info) in zip(live, results, strict=True):
            if term or trunc:
                infos[i] = info
        live = [i for i, r in zip(live, results, strict=True) if not (r[2] or r[3])]
        if not live:
            break
    return infos


@pytest.mark.browser
def test_miniwob_two_browsers_in_workers_and_cleanup() -> None:
    before = _browser_procs()
    venv = VectorEnv("miniwob/click-button", num_envs=2)  # browsers run in workers by default
    ours: set[psutil.Process] = set()
    try:
        assert venv.asynchronous
        workers = [p.pid for p in venv._procs]
        for episode in range(2):
            infos = _expert_episode(venv, [100 + 2 * episode, 101 + 2 * episode])
            assert all(info.get("success") and info.get("strict_success") for info in infos), infos
        # one browser per worker, each a descendant of its own worker process
        pids = venv.call("browser_pids")
        assert all(pids) and not set(pids[0]) & set(pids[1])
        for worker, browser in zip(workers, pids, strict=True):
            ours |= _tree(worker)
            assert set(browser) <= {p.pid for p in _tree(worker)}
        assert len(ours) > 2 + 2 * 2  # workers, chromedrivers, chromium processes
    finally:
        venv.close()
    assert not _wait_gone(ours)
    # no browser process started during the test was orphaned (re-parented away from a Python or
    # browser process); other sessions may run browsers of their own meanwhile
    first = min(p.create_time() for p in ours)
    orphans = {
        p.pid: _cmdline(p)
        for p in _browser_procs() - before
        if p.create_time() >= first
        and not any(k in _cmdline(_ppid(p)) for k in ("chromium", "chromedriver", "python"))
    }
    assert not orphans, orphans


@pytest.mark.browser
def test_miniwob_killed_worker_leaves_no_browser() -> None:
    venv = VectorEnv("miniwob/click-button", num_envs=2, asynchronous=True)
    try:
        venv.reset(seeds=[0, 1])
        victim = venv._procs[0].pid
        procs = _tree(victim)
        assert len(procs) > 2  # worker, chromedriver, chromium
        os.kill(victim, signal.SIGKILL)  # cannot close its browser itself
        with pytest.raises(RuntimeError, match="env index 0"):
            venv.step(["click(ref=1)", "click(ref=1)"])
    finally:
        venv.close()
    assert not _wait_gone(procs)
