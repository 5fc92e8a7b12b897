"""The ``vlmq`` command: one entry point, one subcommand per stage of the data flow.

Each subcommand is a thin wrapper: it parses options and calls library code, so everything the
CLI does is also available from Python.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vlmq.cli_errors import ErrorReportingGroup, fail, number, out_dir, out_file
from vlmq.commands.data import data_app
from vlmq.commands.filter_report import filter_report_cmd
from vlmq.commands.pretrain import pretrain_tiny_cmd
from vlmq.commands.reproduce import reproduce
from vlmq.models.prompts import MAX_NEW_TOKENS

app = typer.Typer(
    cls=ErrorReportingGroup,
    name="vlmq",
    help="VLM Q-Learning: turn vision-language models into agents and improve them with "
    "advantage-filtered SFT (AFSFT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (also: VLMQ_DEBUG=1)."
    ),
) -> None:
    """VLM Q-Learning: turn vision-language models into agents and improve them with AFSFT.

    Errors are one line on stderr (`error: ...`); VLMQ_DEBUG=1 or --debug shows the traceback.
    """


# --------------------------------------------------------------------------- environments


@app.command("envs")
def envs_cmd(
    domain: str | None = typer.Argument(None, help="Only this domain (gym_cards, babyai, miniwob)."),
    show_all: bool = typer.Option(False, "--all", help="Every task, not only the featured ones."),
) -> None:
    """List the environment domains and tasks (domains whose dependencies are missing are skipped)."""
    from vlmq.envs.registry import listing

    for line in listing(domain, show_all):  # an unknown domain: UnknownEnvError, reported by the group
        typer.echo(line)


@app.command("play")
def play_cmd(
    env_id: str = typer.Argument(..., help="Environment id, e.g. gym_cards/Blackjack (see `vlmq envs`)."),
    policy: str = typer.Option(
        "expert", "--policy", "-p", help="random, expert or noisy (epsilon-noisy expert)."
    ),
    episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Number of episodes."),
    seed: int = typer.Option(0, "--seed", callback=number(ge=0), help="Episode i is reset with seed + i."),
    epsilon: float = typer.Option(0.2, "--epsilon", min=0.0, max=1.0, help="Random-action rate of `noisy`."),
    save_frames: str | None = typer.Option(
        None,
        "--save-frames",
        metavar="DIR",
        callback=out_dir,
        help="Write the first episode's frames (PNG) and episode.txt here.",
    ),
    num_envs: int = typer.Option(
        1, "--num-envs", min=1, help="Environments in parallel (one subprocess each; same results)."
    ),
) -> None:
    """Play a scripted policy and print success rate, mean return, valid-action rate and speed."""
    from vlmq.envs.registry import spec
    from vlmq.rollout import SCRIPTED, play

    if policy not in SCRIPTED:
        raise typer.BadParameter(f"choose one of {', '.join(SCRIPTED)}", param_hint="--policy")
    try:
        env_spec = spec(env_id)
    except ImportError as exc:
        raise typer.BadParameter(f"{env_id}: missing dependency ({exc})", param_hint="ENV_ID") from None
    if policy != "random" and not env_spec.expert:
        note = f" ({env_spec.note})" if env_spec.note else ""
        raise typer.BadParameter(f"{env_id} has no scripted expert{note}; use random", param_hint="--policy")
    stats = play(
        env_id, policy, episodes, seed, epsilon, save_frames, progress=episodes >= 50, num_envs=num_envs
    )
    typer.echo(stats.report())
    if save_frames is not None:
        typer.echo(f"first episode saved to {save_frames}")


# --------------------------------------------------------------------------- data


@app.command()
def collect(
    env_id: str = typer.Argument(..., help="Environment id, e.g. gym_cards/NumberLine."),
    policy: str = typer.Option("random", "--policy", "-p", help="random, expert, noisy or model."),
    episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Episodes to collect."),
    out: Path = typer.Option(
        ..., "--out", callback=out_dir, help="Dataset folder (created, or appended to)."
    ),
    epsilon: float = typer.Option(0.2, min=0.0, max=1.0, help="Random-action rate of `noisy`."),
    num_envs: int = typer.Option(1, "--num-envs", min=1, help="Environments run side by side."),
    workers: bool = typer.Option(
        None,
        "--workers/--in-process",
        help="Run the --num-envs envs in subprocess workers, or in this process "
        "(default: workers for slow envs such as MiniWoB++ browsers, in-process otherwise).",
        show_default=False,
    ),
    seed: int = typer.Option(0, callback=number(ge=0), help="Episode k is reset with seed + k."),
    model: str = typer.Option(
        None, "--model", help="Policy for --policy model (base model or saved policy)."
    ),
    temperature: float = typer.Option(
        1.0, callback=number(ge=0), help="Sampling temperature of --policy model (0 = greedy)."
    ),
    max_new_tokens: int = typer.Option(
        MAX_NEW_TOKENS, callback=number(ge=1), help="Response length limit of --policy model."
    ),
) -> None:
    """Collect episodes with a scripted policy or a model into a dataset folder."""
    from vlmq.envs.registry import spec
    from vlmq.rollout import collect as run_collect

    if policy not in ("random", "expert", "noisy", "model"):
        raise typer.BadParameter("choose random, expert, noisy or model", param_hint="--policy")
    spec(env_id)
    pol = None
    if policy == "model":
        if not model:
            raise typer.BadParameter("--policy model needs --model", param_hint="--model")
        from vlmq.models.policy import Policy

        pol = Policy.from_pretrained(model)
    stats = run_collect(
        env_id, policy, episodes, num_envs=num_envs, asynchronous=workers,
        seed=seed, epsilon=epsilon, model=pol,
        temperature=temperature, max_new_tokens=max_new_tokens, out=out,
    )  # fmt: skip
    typer.echo(stats.summary())
    typer.echo(f"saved to {out}")


app.add_typer(data_app, name="data")


# --------------------------------------------------------------------------- training


@app.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
)
def train(ctx: typer.Context) -> None:
    """Train a policy with AFSFT (or SFT / AWR): offline on --data, then online with --online.

    Options: `vlmq train --help` (made from TrainConfig when the command runs: the rest of the CLI
    starts without importing torch).
    """
    from vlmq.commands.train import command

    command().main(ctx.args, prog_name=ctx.command_path, standalone_mode=False)


@app.command("eval")
def eval_cmd(
    env: str = typer.Option(..., "--env", help="Environment id."),
    model: str = typer.Option(
        ..., "--model", help="Base model, saved policy, or a run folder (its last checkpoint)."
    ),
    episodes: int = typer.Option(50, callback=number(ge=1), help="Evaluation episodes."),
    temperature: float = typer.Option(0.0, callback=number(ge=0), help="0 = greedy."),
    num_envs: int = typer.Option(4, callback=number(ge=1), help="Parallel environments."),
    seed: int = typer.Option(
        1_000_000, callback=number(ge=0), help="First episode seed (training never uses these)."
    ),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, callback=number(ge=1), help="Response length limit."),
    json_out: Path = typer.Option(None, "--json", callback=out_file, help="Also write the results as JSON."),
) -> None:
    """Evaluate a policy (including the untrained base model: the prompting baseline)."""
    from vlmq.envs.registry import spec
    from vlmq.models.policy import Policy
    from vlmq.train.checkpoint import latest_checkpoint
    from vlmq.train.evaluate import evaluate_policy
    from vlmq.utils.io import atomic_write_json

    spec(env)
    path = Path(model)
    ckpt = latest_checkpoint(path) if path.is_dir() else None
    policy = Policy.from_pretrained(str(ckpt / "policy") if ckpt else model)
    stats = evaluate_policy(policy, env, episodes=episodes, temperature=temperature, num_envs=num_envs,
                            seed=seed, max_new_tokens=max_new_tokens)  # fmt: skip
    m = stats.metrics()
    typer.echo(
        f"{env} ({episodes} episodes, {'greedy' if temperature == 0 else f'T={temperature}'}): "
        f"success {m['success_rate']:.3f}  return {m['mean_return']:.3f}  valid {m['valid_rate']:.3f}"
    )
    for s in stats.samples[:3]:
        typer.echo(f"  sample: {s}")
    if json_out:
        atomic_write_json(json_out, {"env": env, "model": model, "episodes": episodes, **m})


app.command("filter-report")(filter_report_cmd)


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run folders to overlay."),
    out: Path = typer.Option(Path("curves.png"), "--out", callback=out_file, help="PNG to write."),
) -> None:
    """Plot learning curves of one or more runs into one PNG (e.g. AFSFT vs SFT)."""
    from vlmq.train.plot import plot_runs

    try:
        typer.echo(str(plot_runs(runs, out)))
    except ValueError as e:
        fail(str(e))


@app.command("collect-online")
def collect_online_cmd(
    run: Path = typer.Argument(..., help="Run folder of a `vlmq train --online --online-mode async` run."),
    collector_id: int = typer.Option(
        0, "--id", min=0, help="This collector's number (unique per run: its seeds and log)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    rounds: int = typer.Option(None, min=1, help="Stop after this many rounds (default: when the run ends)."),
) -> None:
    """Collect online episodes for a run with its newest published weights, round after round, until
    the learner finishes (asynchronous collection; also from other machines sharing the run folder)."""
    from vlmq.train.collector import run_collector

    try:
        n = run_collector(run, collector_id, device=device, max_rounds=rounds)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    typer.echo(f"collector {collector_id}: {n} round(s) collected into {run / 'replay'}")


app.command()(reproduce)
app.command("pretrain-tiny")(pretrain_tiny_cmd)


# --------------------------------------------------------------------------- models
@app.command("models")
def models_cmd() -> None:
    """List the model types tested with vlmq and which features apply (feature cache, prefix-LM, bf16)."""
    from vlmq.models.arch import models_table

    typer.echo(models_table())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
