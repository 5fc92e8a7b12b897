"""Progress bars: live on a terminal, sparse plain lines in a log (conftest sets TQDM_DISABLE, hence
``disable=False``)."""

from __future__ import annotations

import io

from vlmq.utils.progress import progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_few_plain_lines() -> None:
    log = io.StringIO()
    for _ in progress_bar(range(5000), desc="work", file=log, disable=False):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert 1 <= len(lines) <= 3  # the first draw and the final summary, not one per update
    assert lines[-1].startswith("work: 100%") and "5000/5000" in lines[-1]


def test_terminal_gets_the_live_bar() -> None:
    tty = _Tty()
    bar = progress_bar(total=3, desc="live", file=tty, mininterval=0, disable=False)
    for _ in range(3):
        bar.update()
    bar.close()
    assert "\r" in tty.getvalue()  # redrawn in place


def test_disabled_writes_nothing() -> None:
    log = io.StringIO()
    for _ in progress_bar(range(10), file=log, disable=True):
        pass
    assert log.getvalue() == ""


def test_postfix_updates_do_not_force_lines() -> None:
    log = io.StringIO()
    bar = progress_bar(total=300, desc="collect", file=log, disable=False)
    for i in range(300):
        bar.update()
        bar.set_postfix(success=i / 300)
        bar.set_description("collect")
    bar.close()
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 3
    assert "300/300" in lines[-1] and "success=" in lines[-1]
