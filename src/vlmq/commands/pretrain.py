"""``vlmq pretrain-tiny``: pre-train or evaluate the embedded `tiny` VLM."""

from __future__ import annotations

from pathlib import Path

import typer

from vlmq.cli_errors import fail, number, out_dir


def pretrain_tiny_cmd(
    out: Path = typer.Option(
        None,
        "--out",
        callback=out_dir,
        help="Output folder (default: the package's tiny model); holds the checkpoint.",
    ),
    steps: int = typer.Option(2000, min=1, help="Optimizer steps."),
    seed: int = typer.Option(0, help="Seed of scenes, initialisation and sampling."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Captions per step."),
    lr: float = typer.Option(
        2e-3, "--lr", callback=number(gt=0), help="Peak learning rate (warm-up, then cosine to 10 %)."
    ),
    warmup: int = typer.Option(100, "--warmup", min=1, help="Warm-up steps."),
    pool: int = typer.Option(4000, "--pool", min=1, help="Pre-rendered training scenes."),
    scenes: int = typer.Option(
        500, "--scenes", min=1, help="Held-out scenes per domain for the accuracy report."
    ),
    checkpoint_every: int = typer.Option(
        250, "--checkpoint-every", min=1, help="Write the resumable checkpoint every K steps."
    ),
    eval_every: int = typer.Option(
        0, "--eval-every", min=0, help="Also score 100 held-out scenes per domain every K steps (0: never)."
    ),
    size_json: str = typer.Option(
        None,
        "--size",
        help="Model size: a JSON file (a pretrain_info.json works) or JSON text, partial, over the shipped size.",
    ),
    image_size: int = typer.Option(None, "--image-size", help="Input resolution (px)."),
    patch: int = typer.Option(None, "--patch", help="Vision patch size (px)."),
    sf: int = typer.Option(None, "--sf", help="Pixel-shuffle factor (image tokens = (size/patch/sf)^2)."),
    vision_width: int = typer.Option(None, "--vision-width", help="Vision hidden size (x24)."),
    vision_depth: int = typer.Option(None, "--vision-depth", help="Vision layers."),
    text_width: int = typer.Option(None, "--text-width", help="Language-model hidden size (x32)."),
    text_depth: int = typer.Option(None, "--text-depth", help="Language-model layers."),
    domains: str = typer.Option(
        None, "--domains", help="Training shares, e.g. numberline=0.5,blackjack=0.5 (default: all five)."
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no progress lines."),
    evaluate: bool = typer.Option(
        False, "--eval", help="Only print the held-out per-field accuracy of --model; no training."
    ),
    model: str = typer.Option(
        None, "--model", help="With --eval: the model folder (default: the shipped tiny model)."
    ),
) -> None:
    """Pre-train the embedded `tiny` VLM on synthetic captions of domain scenes (no actions), or
    evaluate a model's captions (--eval).

    Training writes a checkpoint into --out every --checkpoint-every steps; the same command run again resumes from it (same result as an uninterrupted run); with another --steps (not below the steps already trained; a larger one extends the run) the cosine schedule is stretched to the new total from there on. At the end the folder holds the model and pretrain_info.json with the per-field held-out report.
    """
    import sys
    import time

    from vlmq.models import tiny

    if threads:
        import torch

        torch.set_num_threads(threads)
    progress = False if quiet else sys.stderr.isatty()
    if evaluate:
        folder = model or "tiny"
        t0 = time.time()
        try:
            acc, counts = tiny.heldout_report(folder, scenes, progress=progress)
        except (OSError, ValueError) as e:
            fail(f"cannot evaluate {folder}: {e}")
        typer.echo(f"model {folder}: {scenes} held-out scenes per domain")
        typer.echo(tiny.format_report(acc, counts))
        typer.echo(f"render + describe + score: {time.time() - t0:.1f} s ({sum(counts.values())} scenes)")
        return
    if model:
        fail("--model is only used with --eval (training writes --out)")
    try:
        size = tiny.make_size(
            size_json, image_size=image_size, patch=patch, sf=sf, vision_width=vision_width,
            vision_depth=vision_depth, text_width=text_width, text_depth=text_depth,
        )  # fmt: skip
    except (OSError, ValueError) as e:
        fail(f"bad model size: {e}")
    shares: dict[str, float] | None = None
    if domains:
        try:
            shares = {k.strip(): float(v) for k, v in (item.split("=") for item in domains.split(","))}
        except ValueError:
            fail(f"bad --domains {domains!r}: expected name=share,name=share")
    from tqdm.auto import tqdm

    def log(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    dest = out or tiny.ASSET_DIR
    try:
        info = tiny.pretrain_tiny(
            dest, steps=steps, seed=seed, batch_size=batch_size, lr=lr, warmup=warmup, num_scenes=pool,
            num_heldout=scenes, size=size, domains=shares, checkpoint_every=checkpoint_every, eval_every=eval_every,
            keep_checkpoint=out is not None, progress=progress, log=None if quiet else log,
        )  # fmt: skip
    except ValueError as e:
        fail(str(e))
    typer.echo(
        f"wrote {dest} ({info['parameters'] / 1e6:.2f} M parameters, {info['size_mb']} MB, "
        f"{info['image_tokens']} image tokens; {info['s_per_step']} s/step, {info['wall_s']:.0f} s)"
    )
    typer.echo(f"loss {info['first_loss']} -> {info['final_loss']}")
    typer.echo(tiny.format_report(info["caption_accuracy"], info["heldout_scenes"]))
