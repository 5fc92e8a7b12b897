"""``vlmq data``: inspect and combine episode datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from vlmq.cli_errors import fail, out_dir, out_file

data_app = typer.Typer(help="Inspect and combine episode datasets.", no_args_is_help=True)


@data_app.command("info")
def data_info(
    path: Path = typer.Argument(..., help="Dataset folder."),
    hist: Path = typer.Option(
        None, "--hist", callback=out_file, help="Write a histogram of episode returns to this PNG."
    ),
    tokenizer: str = typer.Option(
        None,
        "--tokenizer",
        help="Count prompt and response tokens with this model's tokenizer (folder or name).",
    ),
) -> None:
    """Summarise a dataset: episodes, turns, sources, success rate, return, valid-action rate, tokens."""
    from vlmq.data.info import format_summary, load_tokenizer, plot_returns, summarize
    from vlmq.data.schema import DataError

    try:
        s = summarize(path, load_tokenizer(tokenizer) if tokenizer else None)
    except DataError as exc:
        fail(str(exc))
    except OSError as exc:  # tokenizer not found
        fail(f"{tokenizer}: cannot load a tokenizer ({exc})".splitlines()[0])
    typer.echo(format_summary(s))
    if hist is not None:
        typer.echo(f"histogram: {plot_returns(s['returns'], hist, str(path))}")


@data_app.command("merge")
def data_merge(
    out: Path = typer.Argument(..., callback=out_dir, help="New dataset folder."),
    inputs: list[Path] = typer.Argument(..., help="Datasets to merge."),
) -> None:
    """Merge datasets (each episode keeps its source)."""
    from vlmq.data.mix import merge

    store = merge(out, inputs)
    typer.echo(f"{store.num_episodes} episodes -> {out}")


@data_app.command("filter")
def data_filter(
    src: Path = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Argument(..., callback=out_dir, help="New dataset folder."),
    source: str = typer.Option(
        None, help="Keep episodes whose source starts with this (random, noisy, ...)."
    ),
    success: bool = typer.Option(None, "--success/--failure", help="Keep only successful / failed episodes."),
) -> None:
    """Keep the episodes of one source and/or outcome."""
    from vlmq.data.mix import filter_episodes

    store = filter_episodes(src, out, source=source, success=success)
    typer.echo(f"{store.num_episodes} episodes -> {out}")


@data_app.command("mix")
def data_mix(
    out: Path = typer.Argument(..., callback=out_dir, help="New dataset folder."),
    parts: list[str] = typer.Option(..., "--from", help="DIR:FRACTION, repeatable (fractions sum to 1)."),
    total: int = typer.Option(..., "--total", min=1, help="Episodes in the mixture."),
    seed: int = typer.Option(0, help="Sampling seed."),
) -> None:
    """Sample a fixed fraction of episodes from each dataset (e.g. 10% expert, 90% random)."""
    from vlmq.data.mix import sample_mixture
    from vlmq.data.schema import DataError

    pairs = []
    for p in parts:
        path, sep, frac = p.rpartition(":")
        try:
            pairs.append((path, float(frac)))
        except ValueError:
            raise typer.BadParameter(f"expected DIR:FRACTION, got {p!r}", param_hint="--from") from None
        if not sep:
            raise typer.BadParameter(f"expected DIR:FRACTION, got {p!r}", param_hint="--from")
    try:
        store = sample_mixture(out, pairs, total, seed)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{store.num_episodes} episodes -> {out}")


@data_app.command("sample")
def data_sample(
    src: Path = typer.Argument(..., help="Dataset folder (e.g. a merge of expert, noisy and random data)."),
    out: Path = typer.Argument(..., callback=out_dir, help="New dataset folder."),
    fracs: list[str] = typer.Option(
        ..., "--frac", help="SOURCE=FRACTION, repeatable (source prefix, e.g. expert=0.1 noisy=0.3)."
    ),
    total: int = typer.Option(..., "--total", min=1, help="Episodes in the sample."),
    seed: int = typer.Option(0, help="Sampling seed."),
) -> None:
    """Sample a fixed fraction of episodes per source from one dataset."""
    from vlmq.data.mix import sample_by_source
    from vlmq.data.schema import DataError

    table: dict[str, float] = {}
    for f in fracs:
        name, sep, frac = f.rpartition("=")
        try:
            table[name] = float(frac)
        except ValueError:
            raise typer.BadParameter(f"expected SOURCE=FRACTION, got {f!r}", param_hint="--frac") from None
        if not sep or not name:
            raise typer.BadParameter(f"expected SOURCE=FRACTION, got {f!r}", param_hint="--frac")
    try:
        store = sample_by_source(src, out, table, total, seed)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{store.num_episodes} episodes -> {out}")
