"""``vlmq train``: its options are generated from :class:`~vlmq.train.config.TrainConfig` and
:class:`~vlmq.algo.afsft.AFSFTConfig` (:mod:`vlmq.commands.options`), so every field has one default
(the config's) and one flag; only the options set on the command line are passed to the config."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import typer

from vlmq.algo.afsft import AFSFTConfig
from vlmq.cli_errors import fail, out_dir
from vlmq.commands.options import dataclass_options, to_fields
from vlmq.train.config import RANGES, TrainConfig

LOSS_FIELDS = {f.name for f in dataclasses.fields(AFSFTConfig)}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def new_config(values: dict[str, Any]) -> TrainConfig:
    """The config of a new run from the options set on the command line."""
    from vlmq.data.store import EpisodeStore
    from vlmq.envs.registry import spec

    env, data = values.get("env"), values.get("data")
    if not env or not values.get("model"):
        fail("--env and --model are required (or --resume RUN)")
    if data is None and not values.get("online"):
        fail("give --data (offline) and/or --online")
    spec(env)  # before the model loads: an unknown env id, a missing or empty dataset
    if data is not None and not EpisodeStore(data).shards():
        fail(f"{data}: dataset is empty (no episodes; `vlmq collect` writes some)")
    loss = {k: v for k, v in values.items() if k in LOSS_FIELDS and k != "filter"}
    run = {k: v for k, v in values.items() if k not in LOSS_FIELDS}
    if data is None:
        run["steps"] = 0  # online from scratch: no offline steps
    return TrainConfig(loss=AFSFTConfig.for_filter(values.get("filter", AFSFTConfig().filter), **loss), **run)


def resumed_config(run: Path, values: dict[str, Any]) -> TrainConfig:
    """The config of the run in ``run``, with the options set on the command line that a resumed run may
    change (:data:`~vlmq.train.config.RESUMABLE`); any other option that differs is refused."""
    if not (run / "config.json").is_file():
        fail(f"{run}: not a vlmq run folder (no config.json)")
    saved = TrainConfig.load(run / "config.json")
    if "out" in values and Path(values["out"]).resolve() != run.resolve():
        fail(f"--out {values['out']} differs from --resume {run}; give only --resume RUN")
    values = {k: v for k, v in values.items() if k != "out"}
    loss = {k: v for k, v in values.items() if k in LOSS_FIELDS}
    cfg = dataclasses.replace(
        saved, out=str(run), loss=dataclasses.replace(saved.loss, **loss),
        **{k: v for k, v in values.items() if k not in LOSS_FIELDS},
    )  # fmt: skip
    if bad := saved.resume_conflicts(cfg):
        names = sorted(k for k in values if k in bad or (k in LOSS_FIELDS and "loss" in bad))
        old = ", ".join(f"{_flag(k)} {getattr(saved.loss if k in LOSS_FIELDS else saved, k)}" for k in names)
        fail(
            f"{', '.join(map(_flag, names))} cannot change when resuming (the run has {old}); --resume "
            "takes only options of the run's length (--steps before an online phase, --online-rounds), "
            "evaluation, logging and hardware"
        )
    return cfg


def finished_at(run: Path) -> int | None:
    """The step of a run's last checkpoint if the run finished (has its summary.json), else None."""
    from vlmq.train.checkpoint import checkpoint_step, latest_checkpoint

    ckpt = latest_checkpoint(run)
    return checkpoint_step(ckpt) if ckpt is not None and (run / "summary.json").is_file() else None


def train(ctx: typer.Context, resume: Path | None, quiet: bool, **options: Any) -> None:
    """Train a policy with AFSFT (or SFT / AWR): offline on --data, then online with --online.

    Every option is a field of TrainConfig or AFSFTConfig (the loss), saved in RUN/config.json.

    --resume RUN continues a run with its config.json; it takes only options that set the run's length, evaluation, logging or hardware (--steps, --online-rounds, --eval-every, --device, ...) and refuses the others.

    Data-parallel on N processes: `accelerate launch --multi_gpu --num_processes N -m vlmq train ...` (also on CPU-only machines; see README, Scaling up).
    """
    from accelerate import PartialState

    from vlmq.train.learner import CollectorsFailed, TrainingDiverged
    from vlmq.train.learner import train as run_training

    values = to_fields(ctx, options)
    cfg = resumed_config(resume, values) if resume is not None else new_config(values)
    if resume is not None and (done := finished_at(resume)) is not None and done >= cfg.total_steps:
        typer.echo(
            f"{resume}: already trained to step {done} of {cfg.total_steps}; nothing to do "
            f"(--steps N with N > {cfg.steps} trains it longer)"
        )
        return
    try:
        summary = run_training(cfg, resume=resume is not None, show_progress=not quiet)
    except (TrainingDiverged, CollectorsFailed, FileExistsError, FileNotFoundError) as e:
        fail(str(e))
    if not PartialState().is_main_process:
        return
    final = summary.get("final_eval", {})
    typer.echo(f"run: {cfg.out}  steps: {summary['steps']}  wall: {summary['wall_time_s']} s")
    for k in ("greedy/success_rate", "greedy/mean_return", "greedy/valid_rate", "critic/ranking_accuracy"):
        if k in final:
            typer.echo(f"  {k}: {final[k]:.3f}")
    for w in summary.get("warnings", []):
        typer.echo(f"  warning: {w}")


def _signature() -> inspect.Signature:
    P = inspect.Parameter
    options = dataclass_options(TrainConfig, RANGES, callbacks={"out": out_dir})
    extra = [
        P("resume", P.KEYWORD_ONLY, annotation=Path | None, default=typer.Option(
            None, "--resume", metavar="RUN",
            help="Continue the run in this folder from its last checkpoint (the options it takes: above).",
        )),
        P("quiet", P.KEYWORD_ONLY, annotation=bool,
          default=typer.Option(False, "--quiet", help="No progress bar.")),
    ]  # fmt: skip
    return inspect.Signature([P("ctx", P.POSITIONAL_OR_KEYWORD, annotation=typer.Context), *options, *extra])


train.__signature__ = _signature()  # type: ignore[attr-defined]


def command() -> Any:
    """The click command of ``vlmq train`` (built on demand by ``vlmq.cli``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("train")(train)
    return typer.main.get_command(app)
