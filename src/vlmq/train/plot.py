"""Learning curves: one PNG per metric, several runs overlaid (e.g. AFSFT vs SFT)."""

from __future__ import annotations

import json
from pathlib import Path

from vlmq.train.logger import read_metrics

DEFAULT_METRICS = (
    "eval/greedy/success_rate",
    "eval/greedy/valid_rate",
    "eval/greedy/mean_return",
    "train/actor_loss",
    "train/critic_loss",
    "train/filter_pass_frac",
    "critic/ranking_accuracy",
)


def plot_runs(
    runs: list[Path],
    out: Path,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    labels: list[str] | None = None,
    groups: list[str] | None = None,
) -> Path:
    """Draw ``metrics`` (rows) for every run (lines) into one PNG at ``out``; returns its path.

    ``groups`` (one name per run, e.g. the condition) gives the runs of a group one colour and
    tells them apart by line style (e.g. the seeds)."""
    import matplotlib  # noqa: PLC0415 (seconds to import; only plots need it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after choosing the Agg backend)

    labels = labels or [_label(r) for r in runs]
    styles = _styles(groups or [str(i) for i in range(len(runs))])
    records = [read_metrics(r) for r in runs]
    present = [m for m in metrics if any(m in rec for recs in records for rec in recs)]
    if not present:
        raise ValueError(f"no metrics to plot in {', '.join(map(str, runs))} (is metrics.jsonl there?)")
    cols = 2 if len(present) > 1 else 1
    rows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, present, strict=False):
        for label, recs, style in zip(labels, records, styles, strict=True):
            pts = [(r["step"], r[metric]) for r in recs if r.get(metric) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, label=label, **style)
        ax.set_title(metric)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _styles(groups: list[str]) -> list[dict[str, str]]:
    """Colour per group (in order of first appearance), line style per member of a group."""
    colour = {g: f"C{i % 10}" for i, g in enumerate(dict.fromkeys(groups))}
    seen: dict[str, int] = {}
    out = []
    for g in groups:
        k = seen[g] = seen.get(g, -1) + 1
        out.append({"color": colour[g], "linestyle": ("-", "--", ":", "-.")[k % 4]})
    return out


def _label(run: Path) -> str:
    cfg = run / "config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        return f"{run.name} ({c.get('loss', {}).get('filter', '?')})"
    return run.name
