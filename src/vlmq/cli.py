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


@app.command("envs")
def envs_cmd(
    domain: str | None = typer.Argument(None, help="Only this domain (gym_cards, babyai, miniwob)."),
) -> None:
    """List the environment domains and tasks (domains whose dependencies are missing are skipped)."""
    from vlmq.envs.registry import list_envs

    try:
        specs = list_envs(domain)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="DOMAIN") from None
    current = None
    for s in specs:
        if s.domain != current:
            current = s.domain
            typer.echo(f"{current}:")
        typer.echo(f"  {s.env_id:<32} {s.description}")


@app.command("play")
def play_cmd(
    env_id: str = typer.Argument(..., help="Environment id, e.g. gym_cards/Blackjack (see `vlmq envs`)."),
    policy: str = typer.Option(
        "expert", "--policy", "-p", help="random, expert or noisy (epsilon-noisy expert)."
    ),
    episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Number of episodes."),
    seed: int = typer.Option(0, "--seed", help="Episode i is reset with seed + i."),
    epsilon: float = typer.Option(0.2, "--epsilon", min=0.0, max=1.0, help="Random-action rate of `noisy`."),
    save_frames: str | None = typer.Option(
        None,
        "--save-frames",
        metavar="DIR",
        help="Write the first episode's frames (PNG) and episode.txt here.",
    ),
) -> None:
    """Play a scripted policy and print success rate, mean return, valid-action rate and speed."""
    from vlmq.envs.play import POLICIES, play
    from vlmq.envs.registry import spec

    if policy not in POLICIES:
        raise typer.BadParameter(f"choose one of {', '.join(POLICIES)}", param_hint="--policy")
    try:
        spec(env_id)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="ENV_ID") from None
    except ImportError as exc:
        raise typer.BadParameter(f"{env_id}: missing dependency ({exc})", param_hint="ENV_ID") from None
    stats = play(env_id, policy, episodes, seed, epsilon, save_frames, progress=episodes >= 50)
    typer.echo(stats.summary())
    if save_frames is not None:
        typer.echo(f"first episode saved to {save_frames}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
