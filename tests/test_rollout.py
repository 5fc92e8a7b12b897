"""The one episode loop: ``collect`` (stored) and ``play`` (measured only) run the same episodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmq.data.schema import Episode
from vlmq.data.store import EpisodeStore
from vlmq.rollout import FrameLog, ScriptedAgent, collect, make_agent, play, rollout

ENV = "gym_cards/Blackjack"


def _key(e: Episode) -> tuple[object, ...]:
    turns = [
        (t.obs_text, t.response, t.action, t.valid, t.reward, t.terminated, t.truncated) for t in e.turns
    ]
    return e.seed, e.success, e.strict_success, turns


def test_collect_and_play_give_the_same_episodes(tmp_path: Path) -> None:
    kw = {"seed": 5, "epsilon": 0.3}
    stored = collect(ENV, "noisy", 12, num_envs=3, asynchronous=False, out=tmp_path / "ds",
                     show_progress=False, **kw)  # fmt: skip
    played = play(ENV, "noisy", 12, num_envs=2, **kw)
    a, b = stored.as_dict(), played.as_dict()
    assert a.pop("steps_per_s") > 0 and b.pop("steps_per_s") > 0
    assert a.pop("mean_return") == pytest.approx(b.pop("mean_return"))
    assert a == b and a["source"] == "noisy:0.3" and a["episodes"] == 12
    seen: list[Episode] = []
    rollout(ENV, ScriptedAgent("noisy", 0.3), 12, seed=5, on_finished=seen.extend)
    on_disk = sorted(EpisodeStore(tmp_path / "ds").iter_episodes(), key=lambda e: e.seed)
    assert [e.seed for e in on_disk] == list(range(5, 17))
    assert [_key(e) for e in on_disk] == [_key(e) for e in sorted(seen, key=lambda e: e.seed)]


def test_agents_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        make_agent("smart")
    with pytest.raises(ValueError, match="needs a model"):
        make_agent("model")
    with pytest.raises(ValueError, match="episodes"):
        rollout(ENV, ScriptedAgent("expert"), 0)


def test_max_steps_cuts_episodes() -> None:
    stats = play("gym_cards/EZPoints", "random", 4, max_steps=2)
    assert stats.episodes == 4 and stats.steps == 8 and stats.mean_length == 2.0


def test_frame_log_writes_episode_txt_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    log = FrameLog(tmp_path / "frames")
    log.reset({"image": np.zeros((4, 4, 3), np.uint8), "text": "start"})
    (tmp_path / "frames" / "episode.txt").write_text("old", encoding="utf-8")
    real = Path.write_text

    def torn(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real(self, text[:3], *args, **kwargs)  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(OSError, match="disk full"):
        log.close()
    monkeypatch.undo()
    # a failed write leaves the previous file whole and no temporary file behind
    assert (tmp_path / "frames" / "episode.txt").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["episode.txt", "frame_000.png"]
    log.close()
    assert (tmp_path / "frames" / "episode.txt").read_text(encoding="utf-8") == "[frame_000.png]\nstart\n"
