"""Scoring ``tiny``'s captions on held-out scenes.

:func:`score_descriptions` scores generated JSON descriptions field by field against the true state
(:data:`FIELDS`: one exact-match accuracy per ``domain/field``, card fields card by card, BabyAI
objects object by object); :func:`evaluate_captions` describes :func:`heldout_seeds` scenes (500
unseen scenes per domain by default) with batched greedy decoding, and :func:`domain_summary` checks
each domain's weakest field against :data:`PASS_AT` (``vlmq pretrain-tiny --eval``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from vlmq.models.tiny.batches import Batcher
from vlmq.models.tiny.scenes import (
    DESCRIBE_JSON,
    NUM_HELDOUT,
    Scene,
    describe_json,
    heldout_seeds,
    render_scenes,
)
from vlmq.utils.progress import progress_bar

# The held-out evaluation: one exact-match accuracy per field (``domain/field``), see score_descriptions.
FIELDS: dict[str, tuple[str, ...]] = {
    "numberline": ("target", "current"),
    "blackjack": (
        "dealer_rank",
        "dealer_suit",
        "hidden",
        "player_rank",
        "player_suit",
        "dealer_total",
        "player_total",
    ),
    "ezpoints": ("rank", "formula"),
    "points24": ("rank", "formula"),
    "babyai": ("ahead", "objects"),
}
PASS_AT: dict[str, float] = {  # a domain passes when its weakest field reaches this accuracy
    "numberline": 0.99,
    "blackjack": 0.99,
    "ezpoints": 0.99,
    "points24": 0.99,
    "babyai": 0.95,
}


_CARD = re.compile(r"^(\S+) of (\w+)$")


def _card_fields(true: Sequence[str], pred: Any) -> tuple[int, int, int]:
    """``(correct ranks, correct suits, n)`` position by position; ``n`` counts the positions of
    either list, so a missing or an extra card is a wrong rank and a wrong suit."""
    pred = [p if isinstance(p, str) else "" for p in pred] if isinstance(pred, list) else []
    ranks = suits = 0
    for t, p in zip(true, pred, strict=False):
        mt, mp = _CARD.match(t), _CARD.match(p)
        if mt and mp:
            ranks += mt.group(1) == mp.group(1)
            suits += mt.group(2) == mp.group(2)
    return ranks, suits, max(len(true), len(pred))


def _same(pred: Any, true: Any) -> float:
    """1.0 when equal and of the same JSON type (``true`` is not ``1``), else 0.0."""
    return float(type(pred) is type(true) and pred == true)


def _object_fields(true: Sequence[str], pred: Any) -> tuple[int, int]:
    """``(correct objects, n)``: each object of either list (as a multiset) is a field, right when it
    is in both; nothing in view and nothing named counts as one right field."""
    got = Counter(str(o) for o in pred) if isinstance(pred, list) else Counter()
    want = Counter(true)
    n = sum((want | got).values())
    return (sum((want & got).values()), n) if n else (1, 1)


def score_descriptions(scenes: Sequence[Scene], texts: Sequence[str]) -> dict[str, float]:
    """Exact-match accuracy per field (:data:`FIELDS`) of generated JSON descriptions against the
    true state, plus ``json_valid``, ``exact`` (whole description) and ``mean_field``.

    Cards (Blackjack's dealer and player rows, the Points games' row) are scored card by card, in
    order, over the positions of the true and the predicted row (a missed or an extra card is
    wrong); Blackjack's ``hidden``: a ``"face down"`` dealer card is named iff there is one;
    ``dealer_total`` only on scenes where the dealer's cards are all face up (else it is ``null``,
    and ``hidden`` covers it); BabyAI's ``objects`` object by object (see :func:`_object_fields`).
    A field no scene scores is left out (``dealer_total`` when every dealer has a face-down card).
    """
    hits: dict[str, list[float]] = {}

    def add(key: str, ok: float, n: float = 1.0) -> None:
        hits.setdefault(key, [0.0, 0.0])
        hits[key][0] += ok
        hits[key][1] += n

    for scene, text in zip(scenes, texts, strict=True):
        try:
            pred = json.loads(text)
        except Exception:
            pred = None
        add("json_valid", float(isinstance(pred, dict)))
        add("exact", float(text.strip() == describe_json(scene)))
        pred = pred if isinstance(pred, dict) else {}
        f, d = scene.facts, scene.domain
        if d == "numberline":
            add("numberline/target", _same(pred.get("target"), f["target"]))
            add("numberline/current", _same(pred.get("current"), f["current"]))
        elif d == "blackjack":
            dealer = pred.get("dealer") if isinstance(pred.get("dealer"), list) else []
            for side, cards in (
                ("dealer", [c for c in dealer if c != "face down"]),
                ("player", pred.get("player")),
            ):
                r, s, n = _card_fields(f[side], cards)
                add(f"blackjack/{side}_rank", r, n)
                add(f"blackjack/{side}_suit", s, n)
            add("blackjack/hidden", float(("face down" in dealer) == f["hidden"]))
            if not f["hidden"]:
                add("blackjack/dealer_total", _same(pred.get("dealer_total"), f["dealer_total"]))
            add("blackjack/player_total", _same(pred.get("player_total"), f["player_total"]))
        elif d in ("ezpoints", "points24"):
            r, _, n = _card_fields(f["cards"], pred.get("cards"))
            add(f"{d}/rank", r, n)
            add(f"{d}/formula", _same(pred.get("formula"), f["formula"]))
        else:
            add("babyai/ahead", _same(pred.get("ahead"), f["ahead"]))
            add("babyai/objects", *_object_fields(f["objects"], pred.get("objects")))
    out = {k: round(v[0] / v[1], 4) for k, v in sorted(hits.items()) if v[1]}
    fields = [v for k, v in out.items() if "/" in k]
    out["mean_field"] = round(float(np.mean(fields)), 4) if fields else 0.0
    return out


def domain_summary(acc: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Per domain with scored fields: its weakest field (``min``, ``worst``), the bar
    (:data:`PASS_AT`) and ``pass``."""
    out: dict[str, dict[str, Any]] = {}
    for d, names in FIELDS.items():
        got = {n: acc[f"{d}/{n}"] for n in names if f"{d}/{n}" in acc}
        if got:
            worst = min(got, key=got.__getitem__)
            out[d] = {
                "min": got[worst],
                "worst": worst,
                "pass_at": PASS_AT[d],
                "pass": got[worst] >= PASS_AT[d],
            }
    return out


def format_report(acc: Mapping[str, float], counts: Mapping[str, int] | None = None) -> str:
    """The per-field table (in :data:`FIELDS` order) and each domain's weakest field against its bar."""
    summary = domain_summary(acc)
    lines = [f"{'field':<26}{'accuracy':>9}"]
    for d, names in FIELDS.items():
        lines += [f"{d + '/' + n:<26}{acc[d + '/' + n]:>9.4f}" for n in names if f"{d}/{n}" in acc]
    lines += ["", f"{'domain':<12}{'scenes':>7}{'min':>8}{'bar':>6}  result  (weakest field)"]
    for d, s in summary.items():
        n = f"{counts[d]}" if counts and d in counts else "-"
        verdict = "pass" if s["pass"] else "FAIL"
        lines.append(f"{d:<12}{n:>7}{s['min']:>8.4f}{s['pass_at']:>6.2f}  {verdict:<6}  ({s['worst']})")
    extra = "  ".join(f"{k} {acc[k]:.4f}" for k in ("json_valid", "exact", "mean_field") if k in acc)
    passed = bool(summary) and all(s["pass"] for s in summary.values())
    lines += ["", extra, "all domains pass" if passed else "not all domains pass"]
    return "\n".join(lines)


@torch.no_grad()
def describe_scenes(
    model: torch.nn.Module,
    processor: Any,
    scenes: Sequence[Scene],
    batch_size: int = 64,
    max_new_tokens: int = 96,
    progress: bool = False,
) -> list[str]:
    """Greedy JSON descriptions of ``scenes``, ``batch_size`` at a time, by an in-memory model: the
    same prompt, stop tokens and decoding as :meth:`vlmq.models.policy.Policy.generate` (every prompt
    has the same length, so no padding). Leaves the model's mode and the global RNG as they were."""
    from transformers import GenerationConfig

    if not scenes:
        return []
    batcher = Batcher(processor, scenes)
    tok = batcher.tok
    prompt = torch.tensor(tok(batcher.prompt_text(DESCRIBE_JSON), add_special_tokens=False)["input_ids"])
    stops = sorted({int(batcher.eot), *([int(tok.eos_token_id)] if tok.eos_token_id is not None else [])})
    image_token = getattr(model.config, "image_token_id", None)
    gcfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stops,
        pad_token_id=int(tok.pad_token_id),
        suppress_tokens=[int(image_token)] if image_token is not None else None,
        use_cache=True,
    )
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        with torch.random.fork_rng(devices=[]):
            for k in progress_bar(
                range(0, len(scenes), batch_size), desc="describe", disable=not progress, leave=False
            ):
                idx = list(range(k, min(k + batch_size, len(scenes))))
                ids = prompt.repeat(len(idx), 1).to(param.device)
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    pixel_values=batcher.pixel_values(idx).to(param.device, param.dtype),
                    pixel_attention_mask=batcher.masks[idx].unsqueeze(1).to(param.device),
                    generation_config=gcfg,
                )
                for row in out[:, ids.shape[1] :].tolist():
                    cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
                    texts.append(tok.decode(row[:cut], skip_special_tokens=True))
    finally:
        model.train(was_training)
    return texts


def load_model(folder: str | os.PathLike[str]) -> tuple[torch.nn.Module, Any]:
    """``(model, processor)`` of a model folder or embedded name (``"tiny"``), in eval mode."""
    from transformers import AutoModelForImageTextToText

    from vlmq.models.arch import load_processor
    from vlmq.models.hub import loading_model, quiet_loading, resolve_model

    path = resolve_model(str(folder))
    with quiet_loading(), loading_model(path):
        model = AutoModelForImageTextToText.from_pretrained(path)
        proc = load_processor(path, model.config.model_type)
    return model.eval(), proc


def evaluate_captions(
    folder: str | os.PathLike[str], scenes: Sequence[Scene], batch_size: int = 64, progress: bool = False
) -> dict[str, float]:
    """Load ``folder`` (a model folder or ``"tiny"``), describe each scene as JSON (greedy, batched,
    :func:`describe_scenes`) and score it with :func:`score_descriptions`."""
    model, proc = load_model(folder)
    return score_descriptions(scenes, describe_scenes(model, proc, scenes, batch_size, progress=progress))


def heldout_report(
    folder: str | os.PathLike[str],
    n_per_domain: int = NUM_HELDOUT,
    domains: Sequence[str] | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, int]]:
    """The held-out report of a model folder: render ``n_per_domain`` :func:`heldout_seeds` scenes per
    domain, score them (:func:`evaluate_captions`); returns ``(accuracy per field, scenes per domain)``."""
    heldout = render_scenes(heldout_seeds(n_per_domain, domains), progress=progress, desc="render held-out")
    acc = evaluate_captions(folder, heldout, progress=progress)
    return acc, dict(Counter(s.domain for s in heldout))
