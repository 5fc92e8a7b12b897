"""``vlmq filter-report``: what the AFSFT filter passes, and how the critic ranks."""

from __future__ import annotations

from pathlib import Path

import typer

from vlmq.cli_errors import fail


def filter_report_cmd(
    model: str = typer.Argument(..., help="A run folder (its last checkpoint and filter) or a saved policy."),
    data: str = typer.Option(None, "--data", help="Logged turns to score (default: the run's offline data)."),
    turns: int = typer.Option(64, min=1, help="Turns drawn from the data."),
    seed: int = typer.Option(0, help="Seed of the draw."),
    env: str = typer.Option(
        None, "--env", help="Task whose held-out states probe the critic's ranking (default: the run's)."
    ),
) -> None:
    """Which logged response tokens pass the AFSFT filter, position by position (the critic's view), and
    the critic's ranking accuracy on held-out states (does it prefer the expert's actions?)."""
    from vlmq.algo.afsft import AFSFTConfig
    from vlmq.envs.registry import spec
    from vlmq.models.policy import Policy
    from vlmq.train.checkpoint import latest_checkpoint
    from vlmq.train.config import TrainConfig
    from vlmq.train.filter_report import filter_report, format_report, sample_turns

    path = Path(model)
    ckpt = latest_checkpoint(path) if path.is_dir() else None
    # a run folder: its config.json is a TrainConfig (a base model folder's is the model's)
    run_cfg = TrainConfig.load(path / "config.json") if ckpt and (path / "config.json").is_file() else None
    loss = run_cfg.loss if run_cfg else AFSFTConfig()
    data = data or (run_cfg.data if run_cfg else None)
    if data is None:
        fail("give --data (the model is not a run folder with offline data)")
    env = env or (run_cfg.env if run_cfg else None)
    if env:
        spec(env)
    try:
        samples = sample_turns(data, turns, seed)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    policy = Policy.from_pretrained(str(ckpt / "policy") if ckpt else model)
    typer.echo(f"{len(samples)} turns of {data}; filter {loss.filter} (threshold {loss.threshold})")
    typer.echo(format_report(filter_report(policy, samples, loss)))
    if env:
        from vlmq.train.ranking import blind_accuracy, build_probes, ranking_accuracy, ranking_verdict

        probes = build_probes(env)
        acc = ranking_accuracy(policy, probes)
        if acc is None:
            typer.echo(f"ranking accuracy: {env} has no in-process scripted expert to probe")
        else:
            chance = blind_accuracy(probes)
            typer.echo(
                f"ranking accuracy on {len(probes)} held-out states of {env}: {acc:.3f} (chance {chance:.3f})"
            )
            if warning := ranking_verdict(acc, chance):
                typer.echo(f"warning: {warning}")
