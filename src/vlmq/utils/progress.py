"""Progress bars: tqdm's live bar on a terminal; on a file or a pipe, sparse plain lines (at most one
every :data:`PLAIN_INTERVAL` seconds, plus the last), so a log does not fill with hundreds of
carriage-return updates."""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm as _std_tqdm
from tqdm.auto import tqdm

PLAIN_INTERVAL = 30.0


class _PlainLines:
    """A stream for tqdm that turns each redraw (``\\r...``) into one line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


class _SparseTqdm(_std_tqdm):
    """tqdm whose postfix and description updates wait for the next timed redraw instead of forcing one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def progress_bar(*args: Any, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(*args, **kwargs)`` on stderr (or ``file``); plain sparse lines where it is not a terminal."""
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(*args, file=stream, **kwargs)
    kwargs.setdefault("mininterval", PLAIN_INTERVAL)
    kwargs.setdefault("maxinterval", PLAIN_INTERVAL * 10)
    kwargs["leave"] = True  # the last line stays: it is the summary of the bar
    return _SparseTqdm(*args, file=_PlainLines(stream), dynamic_ncols=False, ncols=100, **kwargs)
