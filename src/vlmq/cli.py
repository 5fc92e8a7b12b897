"""The ``vlmq`` command: one entry point, one subcommand per stage of the data flow.

Each subcommand is a thin wrapper: it parses options and calls library code, so everything the
CLI does is also available from Python.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="vlmq",
    help="VLM Q-Learning: turn vision-language models into agents and improve them with "
    "advantage-filtered SFT (AFSFT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """VLM Q-Learning: turn vision-language models into agents and improve them with AFSFT."""


# --------------------------------------------------------------------------- environments


def main() -> None:
    app()


if __name__ == "__main__":
    main()
