"""VectorEnv with subprocess workers on BabyAI and MiniWoB++ (one browser per worker)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

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



def _start(pid: int) -> int | None:
    from vlmq.envs.miniwob import _proc_start

    return _proc_start(pid)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return -1
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _tree(pid: int) -> set[tuple[int, int]]:
    """``pid`` and its live descendants as (pid, start time): start times guard against pid reuse."""
    from vlmq.envs.miniwob import process_tree

    return {(p, t) for p in process_tree(pid) if (t := _start(p)) is not None}


def _browser_procs() -> set[tuple[int, int]]:
    """Every live chromium/chromedriver process as (pid, start time)."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and any(k in _cmdline(int(name)) for k in ("chromium", "chromedriver")):
            start = _start(int(name))
            if start is not None:
                out.add((int(name), start))
    return out


def _wait_gone(procs: set[tuple[int, int]], timeout: float = 10.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_start(p) == t for p, t in procs):
        time.sleep(0.1)
    return {p: _cmdline(p) for p, t in procs if _start(p) == t}


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
    ours: set[tuple[int, int]] = set()
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
            assert set(browser) <= {p for p, _ in _tree(worker)}
        assert len(ours) > 2 + 2 * 2  # workers, chromedrivers, chromium processes
    finally:
        venv.close()
    assert not _wait_gone(ours)
    # no browser process started during the test was orphaned (re-parented away from a Python or
    # browser process); other sessions may run browsers of their own meanwhile
    first = min(t for _, t in ours)
    orphans = {
        p: _cmdline(p)
        for p, t in _browser_procs() - before
        if t >= first and not any(k in _cmdline(_ppid(p)) for k in ("chromium", "chromedriver", "python"))
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
