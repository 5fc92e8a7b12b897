"""``vlmq reproduce``: the comparison of docs/results.md in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from vlmq.cli_errors import fail, out_dir


def reproduce(
    out: Path = typer.Option(
        Path("runs/reproduce"), "--out", callback=out_dir, help="Folder for data, runs and results."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Minutes: one task per domain, one seed, a few episodes and steps."
    ),
    tasks: list[str] = typer.Option(None, "--task", help="Only these tasks (repeatable)."),
    seeds: int = typer.Option(None, "--seeds", min=1, help="Number of seeds (0, 1, ...)."),
    model: str = typer.Option(None, "--model", help="Base model (default: the embedded `tiny`)."),
    report_only: bool = typer.Option(
        False, "--report", help="Train nothing: tables from the finished seeds of each task only."
    ),
    jobs: int = typer.Option(
        1, "--jobs", min=1, help="(task, seed) units at once, in worker processes sharing the CPU cores."
    ),
) -> None:
    """Prompting vs SFT vs AFSFT (random and noisy data, offline and online) on every domain; writes
    results.md, results.json and learning curves. Run it again to continue an interrupted run."""
    from vlmq.envs.registry import spec
    from vlmq.experiments.reproduce import ReproduceConfig, report
    from vlmq.experiments.reproduce import reproduce as run_reproduce

    overrides: dict[str, object] = {"out": str(out)}
    if tasks:
        overrides["tasks"] = list(tasks)
    if seeds:
        overrides["seeds"] = list(range(seeds))
    if model:
        overrides["model"] = model
    cfg = ReproduceConfig.quick(**overrides) if quick else ReproduceConfig(**overrides)  # type: ignore[arg-type]
    for task in cfg.tasks:
        spec(task)
    try:
        results = report(cfg) if report_only else run_reproduce(cfg, jobs=jobs)
    except (KeyError, ValueError) as e:
        fail(str(e.args[0] if isinstance(e, KeyError) else e))
    if not results["tasks"]:
        fail(
            f"{out}: no finished seeds to report; run `vlmq reproduce` with this --out (without --report) first"
        )
    typer.echo((out / "results.md").read_text())
    typer.echo(f"results: {out / 'results.md'}, {out / 'results.json'}; curves: {out / 'curves'}")
