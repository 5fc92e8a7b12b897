"""Command-line options generated from a dataclass: one flag per field, with the field's default, type
and range, and the first sentence of its docstring as help.

A field's docstring is the string literal right below it (as Sphinx reads attribute docstrings).
``str`` fields take text, ``bool`` fields become a flag that changes the default (``--name``, or ``--no-name``
for a field that defaults to True; ``--name on|off`` when the default is ``None``), ``Literal`` fields a
choice, numbers are checked by :func:`vlmq.cli_errors.number`, and an optional number with a default other
than ``None`` also takes ``off`` (``None``). Fields without a docstring, or of another type, get no flag.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import textwrap
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import typer

from vlmq.cli_errors import number

OFF = "off"


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass, read from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = nxt.value.value
    return docs


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring, as plain text (reST markup removed)."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", " ".join(doc.split())).replace("``", "")
    return re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=\.)\s+", text, maxsplit=1)[0]


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: str | None) -> str | None:
        if value is None or value in choices:
            return value
        raise typer.BadParameter(f"must be {', '.join(choices[:-1])} or {choices[-1]}, not {value!r}")

    return check


def _on_off(value: str | None) -> bool | None:
    if value is None or value in ("on", "off"):
        return None if value is None else value == "on"
    raise typer.BadParameter(f"must be on or off, not {value!r}")


def _off_or_number(bounds: dict[str, float], as_type: type) -> Callable[[Any], Any]:
    check = number(**bounds)

    def parse(value: Any) -> Any:
        if value is None or value == OFF:
            return value
        try:
            return check(as_type(value))
        except ValueError:
            raise typer.BadParameter(f"must be a number or '{OFF}', not {value!r}") from None

    return parse


def field_option(f: dataclasses.Field[Any], hint: Any, doc: str, bounds: dict[str, float] | None,
                 callback: Callable[[Any], Any] | None = None) -> inspect.Parameter | None:  # fmt: skip
    """The typer option of one field (``None``: the field gets no flag)."""
    flag = "--" + f.name.replace("_", "-")
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    default = f.default if f.default is not dataclasses.MISSING else None
    kw: dict[str, Any] = {"help": first_sentence(doc)}
    name = f.name
    if base is bool and default is True:  # parsed as no_<name> = True; see :func:`to_fields`
        name, decls, annotation, default = f"no_{f.name}", [f"--no-{flag[2:]}"], bool, False
        kw["help"] = "Turn off: " + kw["help"][:1].lower() + kw["help"][1:]
    elif base is bool and default is None:
        decls, annotation, kw["callback"], kw["metavar"] = [flag], str | None, _on_off, "on|off"
    elif base is bool:
        decls, annotation = [flag], bool
    elif typing.get_origin(base) is Literal:
        choices = typing.get_args(base)
        decls, annotation, kw["metavar"] = [flag], str | None, "|".join(choices)
        kw["callback"] = _one_of(choices)
    elif base is str:
        decls, annotation = [flag], str | None
    elif base in (int, float):
        decls = [flag]
        if optional and default is not None:  # e.g. forced_prob 0.95: `off` is None
            annotation, kw["callback"] = str | None, _off_or_number(bounds or {}, base)
            kw["metavar"] = f"{base.__name__.upper()}|{OFF}"
            default = str(default)
        else:
            annotation, kw["callback"] = base | None, number(**(bounds or {}))
    else:
        return None
    if callback is not None:
        kw["callback"] = callback
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, *decls, **kw),
        annotation=annotation,
    )


def dataclass_options(
    cls: type, ranges: dict[str, dict[str, float]], callbacks: dict[str, Callable[[Any], Any]] | None = None
) -> list[inspect.Parameter]:
    """One option per documented field of ``cls`` whose type has a flag form; a field that is itself
    a dataclass contributes its own fields (flat: ``loss.gamma`` is ``--gamma``)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    params: list[inspect.Parameter] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            params += dataclass_options(hints[f.name], ranges, callbacks)
        elif f.name in docs and (p := field_option(
            f, hints[f.name], docs[f.name], ranges.get(f.name), (callbacks or {}).get(f.name)
        )):  # fmt: skip
            params.append(p)
    return params


def to_fields(ctx: typer.Context, options: dict[str, Any]) -> dict[str, Any]:
    """``{field: value}`` of the options set on the command line (or by an environment variable):
    ``off`` is ``None``, ``--no-name`` is ``name = False``."""
    values = {}
    for k, v in options.items():
        src = ctx.get_parameter_source(k)
        if src is None or src.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        if k.startswith("no_") and isinstance(v, bool):
            values[k[3:]] = not v
        else:
            values[k] = None if v == OFF else v
    return values
