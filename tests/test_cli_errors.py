"""Bad command lines end in one ``error: ...`` line on stderr and a non-zero exit, never a traceback;
``VLMQ_DEBUG=1`` / ``--debug`` show the traceback instead (vlmq.cli_errors)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.data.schema import DataError

runner = CliRunner()
TRAIN = ["train", "--env", "gym_cards/NumberLine", "--model", "tiny", "--quiet"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{tmp}: an empty work folder, {file}: a regular file, {empty}: an empty folder,
    {meta}: a dataset folder without episodes, {data}: 2 random NumberLine episodes."""
    from vlmq.data.store import EpisodeStore
    from vlmq.rollout import collect

    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "file").write_text("not a folder")
    (tmp / "empty").mkdir()
    EpisodeStore(tmp / "meta", create=True)
    collect("gym_cards/NumberLine", "random", 2, out=tmp / "data", asynchronous=False, show_progress=False)
    names = ("file", "empty", "meta", "data")
    return {"tmp": str(tmp / "work"), **{k: str(tmp / k) for k in names}}


# (command line, text the error line must hold, exit code); {name}: a path of the `paths` fixture
CASES: list[tuple[str, str, int]] = [
    # train
    ("{train} --data {tmp}/missing", "{tmp}/missing: no such dataset folder", 1),
    ("{train} --data {empty}", "{empty}: not a vlmq dataset", 1),
    ("{train} --data {meta}", "{meta}: dataset is empty", 1),
    ("{train} --data {data} --env gym_cards/Nope", "unknown env 'gym_cards/Nope'", 2),
    ("{train} --data {data} --model no/such --out {tmp}/r", "cannot load model 'no/such'", 1),
    ("{train} --data {data} --lr nan", "'--lr': must be a finite number > 0, not nan", 2),
    ("{train} --data {data} --lr 0", "'--lr': must be > 0, not 0.0", 2),
    ("{train} --data {data} --steps -3", "'--steps': must be >= 0, not -3", 2),
    ("{train} --data {data} --gamma 1.5", "'--gamma': must be >= 0 and <= 1, not 1.5", 2),
    (
        "{train} --data {data} --conservative nan",
        "'--conservative': must be a finite number >= 0, not nan",
        2,
    ),
    ("{train} --data {data} --forced-prob 2", "'--forced-prob': must be > 0 and <= 1, not 2.0", 2),
    ("{train} --data {data} --filter sft", "'--filter': must be binary, exp or none, not 'sft'", 2),
    ("train --resume {tmp}/norun --steps 5", "{tmp}/norun: not a vlmq run folder", 1),
    ("{train} --data {data} --out {file}/run", "cannot create {file}/run: {file} is a file", 2),
    ("train --resume {tmp}/norun", "{tmp}/norun: not a vlmq run folder", 1),
    # eval
    ("eval --env gym_cards/NumberLine --model {empty}", "{empty}: cannot load a model from this folder", 1),
    ("eval --env gym_cards/NumberLine --model tiny --episodes 0", "'--episodes': must be >= 1, not 0", 2),
    ("eval --env gym_cards/Nope --model tiny", "unknown env 'gym_cards/Nope'", 2),
    ("eval --env gym_cards/NumberLine --model tiny --json {file}/x.json", "{file} is a file", 2),
    # play, collect, envs
    ("play gym_cards/NumberLine -n 1 --save-frames {file}/frames", "cannot create {file}/frames", 2),
    ("play gym_cards/Nope", "unknown env 'gym_cards/Nope'", 2),
    ("envs nodomain", "unknown domain 'nodomain'", 2),
    ("collect gym_cards/Nope --out {tmp}/c", "unknown env 'gym_cards/Nope'", 2),
    ("collect gym_cards/NumberLine --out {file}", "{file} is a file, not a folder", 2),
    ("collect gym_cards/NumberLine --out {tmp}/c --temperature inf", "finite number >= 0, not inf", 2),
    # data
    ("data info {tmp}/missing", "{tmp}/missing: no such dataset folder", 1),
    ("data info {empty}", "{empty}: not a vlmq dataset", 1),
    ("data info {data} --hist {file}/h.png", "cannot create {file}/h.png", 2),
    ("data mix {tmp}/m --from {tmp}/missing:1 --total 2", "{tmp}/missing: no such dataset folder", 1),
    ("data mix {file}/m --from {data}:1 --total 2", "cannot create {file}/m", 2),
    ("data merge {tmp}/m {empty}", "{empty}: not a vlmq dataset", 1),
    # plot, filter-report, reproduce, pretrain-tiny, collect-online
    ("plot {tmp}/norun --out {tmp}/c.png", "no metrics to plot in {tmp}/norun", 1),
    ("plot {empty} --out {file}/c.png", "cannot create {file}/c.png", 2),
    ("filter-report tiny --data {tmp}/missing", "{tmp}/missing", 1),
    ("filter-report tiny --data {data} --env gym_cards/Nope", "unknown env 'gym_cards/Nope'", 2),
    ("reproduce --quick --report --out {tmp}/rep0", "{tmp}/rep0: no finished seeds to report", 1),
    ("reproduce --report --out {empty}", "{empty}: no finished seeds to report", 1),
    ("reproduce --quick --task gym_cards/Nope --out {tmp}/rep", "unknown env 'gym_cards/Nope'", 2),
    ("reproduce --out {file}/rep", "cannot create {file}/rep", 2),
    ("pretrain-tiny --lr nan --out {tmp}/t", "'--lr': must be a finite number > 0, not nan", 2),
    ("pretrain-tiny --out {file}/t", "cannot create {file}/t", 2),
    ("collect-online {tmp}/norun", "{tmp}/norun: not a vlmq run folder", 1),
]


@pytest.mark.parametrize(("line", "expected", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_command_line_is_one_error_line(
    line: str, expected: str, code: int, paths: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLMQ_DEBUG", raising=False)
    subs = {**paths, "train": " ".join(TRAIN)}
    r = runner.invoke(app, line.format(**subs).split())
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert expected.format(**paths) in lines[0]
    if "gym_cards/Nope" in line or "nodomain" in line:
        assert "`vlmq envs`" in lines[0]
    if "no/such" in line:
        assert "offline" in lines[0] and "local folder" in lines[0]


# a command that fails writes nothing: no run folder for a model that loads nothing, no empty tables
NOTHING_WRITTEN: list[tuple[str, str]] = [
    ("{train} --data {data} --model no/such --out {tmp}/no-run", "{tmp}/no-run"),
    ("reproduce --report --out {tmp}/no-rep", "{tmp}/no-rep"),
    ("reproduce --quick --report --out {empty}", "{empty}/results.md"),
]


@pytest.mark.parametrize(("line", "unwritten"), NOTHING_WRITTEN, ids=[c[0] for c in NOTHING_WRITTEN])
def test_failed_command_leaves_nothing_behind(
    line: str, unwritten: str, paths: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    monkeypatch.delenv("VLMQ_DEBUG", raising=False)
    r = runner.invoke(app, line.format(**paths, train=" ".join(TRAIN)).split())
    assert r.exit_code == 1 and len(r.stderr.splitlines()) == 1, r.output
    assert not Path(unwritten.format(**paths)).exists()


def test_debug_shows_the_exception(paths: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    args = [*TRAIN, "--data", f"{paths['tmp']}/missing"]
    r = runner.invoke(app, ["--debug", *args])
    assert isinstance(r.exception, DataError) and not r.stderr
    monkeypatch.setenv("VLMQ_DEBUG", "1")
    r = runner.invoke(app, args)
    assert isinstance(r.exception, DataError) and not r.stderr
    monkeypatch.setenv("VLMQ_DEBUG", "0")
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and r.stderr.startswith("error: ")


def test_entry_point_traceback_only_with_vlmq_debug(paths: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "vlmq", "data", "info", f"{paths['tmp']}/missing"]
    env = {k: v for k, v in os.environ.items() if k != "VLMQ_DEBUG"}
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [f"error: {paths['tmp']}/missing: no such dataset folder"]
    debug = subprocess.run(cmd, capture_output=True, text=True, env={**env, "VLMQ_DEBUG": "1"}, timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "no such dataset folder" in debug.stderr.splitlines()[-1]


def test_unexpected_error_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import vlmq.envs.registry as registry

    def broken(domain: str | None = None) -> list[object]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("VLMQ_DEBUG", raising=False)
    monkeypatch.setattr(registry, "list_envs", broken)
    r = runner.invoke(app, ["envs"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.splitlines() == [
        "error: unexpected ZeroDivisionError: division by zero (a bug? VLMQ_DEBUG=1 shows the traceback)"
    ]


def test_loading_a_model_holds_back_hub_retry_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """huggingface_hub's per-retry warnings would precede the one-line error; they are held back."""
    import logging

    from vlmq.models.hub import ModelLoadError, loading_model

    hub = logging.getLogger("huggingface_hub.utils._http")
    before = logging.getLogger("huggingface_hub").level
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(ModelLoadError, match="no/such"),
        loading_model("no/such"),
    ):
        hub.warning("Retrying in 1s [Retry 1/5].")
        raise OSError("We couldn't connect to 'https://huggingface.co'")
    assert "Retrying" not in caplog.text
    assert logging.getLogger("huggingface_hub").level == before
