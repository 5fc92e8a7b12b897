"""Dataset summaries for ``vlmq data info``: counts, sources, outcomes, lengths, a return histogram.

Everything streams the store shard by shard. Response length is counted in characters and words, and
in tokens when a tokenizer (any object with ``__call__(text) -> {"input_ids": ...}``, e.g. a Hugging
Face tokenizer) is given, since datasets are model-agnostic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmq.data.store import EpisodeStore


def load_tokenizer(name_or_path: str) -> Any:
    """A Hugging Face tokenizer (or a VLM processor's tokenizer) from a folder or embedded name."""
    from transformers import AutoTokenizer

    try:
        from vlmq.models.hub import resolve_model

        name_or_path = str(resolve_model(name_or_path))
    except Exception:  # no models package yet, or not an embedded name
        pass
    return AutoTokenizer.from_pretrained(name_or_path)


def summarize(store: EpisodeStore | str | Path, tokenizer: Any = None) -> dict[str, Any]:
    """:meth:`EpisodeStore.stats` plus prompt/response token counts when ``tokenizer`` is given.

    The ``returns`` entry (one episode return per episode) feeds :func:`plot_returns`.
    """
    store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
    s = store.stats()
    if tokenizer is not None:
        n_prompt = n_resp = 0
        for r in store.iter_turns(["prompt", "response"]):
            n_prompt += len(tokenizer(r["prompt"] or "", add_special_tokens=False)["input_ids"])
            n_resp += len(tokenizer(r["response"] or "", add_special_tokens=False)["input_ids"])
        s["prompt_tokens"], s["response_tokens"] = n_prompt, n_resp
        s["mean_response_tokens"] = n_resp / s["turns"] if s["turns"] else 0.0
    return s


def format_summary(summary: dict[str, Any]) -> str:
    """Aligned ``key: value`` lines (the per-episode ``returns`` list is left out)."""
    lines = []
    for k, v in summary.items():
        if k == "returns":
            continue
        if isinstance(v, float):
            text = f"{v:.4g}"
        elif isinstance(v, dict):
            text = ", ".join(f"{a}={b:.3g}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items())
        else:
            text = str(v)
        lines.append(f"{k:>22}: {text}")
    return "\n".join(lines)


def plot_returns(returns: list[float], png: str | Path, title: str = "") -> Path:
    """Histogram of episode returns written to ``png`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(returns, bins=30)
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
