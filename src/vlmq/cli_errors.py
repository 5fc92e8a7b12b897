"""How the ``vlmq`` command reports errors: one line on stderr, ``error: ...``, never a traceback.

Every subcommand runs inside :class:`ErrorReportingGroup` (the app's group class), which turns an
exception into one line that says what was wrong and what to do, and a non-zero exit:

* bad options and arguments, parser checks included, and unknown env ids: exit 2 (as click does);
* what is found while running: :func:`fail` (:class:`CliError`), missing or broken datasets
  (``DataError``), models that load nothing (``ModelLoadError``), paths that cannot be read or
  written (``OSError``): exit 1;
* anything else is a bug: one line naming it and how to see the traceback, exit 1.

``VLMQ_DEBUG=1`` (or ``vlmq --debug COMMAND ...``) lets the exception through: the full traceback.
The option callbacks :func:`number`, :func:`out_dir` and :func:`out_file` check values in the
parser, before any work starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

DEBUG_ENV = "VLMQ_DEBUG"


class CliError(Exception):
    """An error the user can fix; its message is the whole report."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the command with ``error: message`` on stderr and exit ``code``."""
    raise CliError(message, code)


def debug_enabled(ctx: typer.Context | None = None) -> bool:
    """``VLMQ_DEBUG`` set (not 0/false/no/empty) or ``--debug`` given: show tracebacks."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def _one_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def describe(exc: BaseException) -> tuple[str, int]:
    """The one-line report of ``exc`` and the exit code."""
    from typer._click.exceptions import UsageError

    from vlmq.data.schema import DataError
    from vlmq.envs.registry import UnknownEnvError
    from vlmq.models.hub import ModelLoadError

    if isinstance(exc, CliError):
        return _one_line(str(exc)), exc.exit_code
    if isinstance(exc, UsageError):
        command = exc.ctx.command_path if exc.ctx is not None else "vlmq"
        return f"{_one_line(exc.format_message())} (see `{command} --help`)", 2
    if isinstance(exc, UnknownEnvError):
        return f"{_one_line(str(exc))}; `vlmq envs` lists the valid ids", 2
    if isinstance(exc, (DataError, ModelLoadError)):
        return _one_line(str(exc)), 1
    if isinstance(exc, OSError):
        if exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror.lower()} (check the path and its permissions)", 1
        return _one_line(str(exc)) or type(exc).__name__, 1
    detail = _one_line(str(exc))
    return (
        f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} "
        f"(a bug? {DEBUG_ENV}=1 shows the traceback)",
        1,
    )


class ErrorReportingGroup(TyperGroup):
    """The ``vlmq`` group: reports what its subcommands raise as one line (module docstring)."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        from typer._click.exceptions import NoArgsIsHelpError
        from typer.exceptions import Abort, Exit

        try:
            return super().invoke(ctx)
        except (Exit, Abort, NoArgsIsHelpError):
            raise
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            message, code = describe(exc)
            typer.echo(f"error: {message}", err=True)
            raise Exit(code) from None


# ------------------------------------------------------------------ parser checks (option callbacks)


def number(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None
) -> Callable[[Any], Any]:
    """An option callback that accepts ``None`` and finite numbers (int or float) within the bounds."""
    wanted = " and ".join(f"{op} {b:g}" for op, b in ((">", gt), (">=", ge), ("<=", le)) if b is not None)

    def check(value: Any) -> Any:
        if value is None:
            return None
        if not math.isfinite(value):
            raise typer.BadParameter(f"must be a finite number{' ' + wanted if wanted else ''}, not {value}")
        if (
            (gt is not None and value <= gt)
            or (ge is not None and value < ge)
            or (le is not None and value > le)
        ):
            raise typer.BadParameter(f"must be {wanted}, not {value}")
        return value

    return check


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(value: Any, folder: bool) -> None:
    if value is None:
        return
    path = Path(value).expanduser().absolute()
    if path.exists():
        if folder and not path.is_dir():
            raise typer.BadParameter(f"{value} is a file, not a folder")
        if not folder and path.is_dir():
            raise typer.BadParameter(f"{value} is a folder, not a file")
        target = path if folder else path.parent
    else:
        target = _first_existing(path.parent)
        if not target.is_dir():
            raise typer.BadParameter(f"cannot create {value}: {target} is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write to {target} (permission denied); give another path")


def out_dir(value: Any) -> Any:
    """Option callback: an output folder that exists or can be created, and written to."""
    _check_writable(value, folder=True)
    return value


def out_file(value: Any) -> Any:
    """Option callback: an output file whose folder exists or can be created, and written to."""
    _check_writable(value, folder=False)
    return value
