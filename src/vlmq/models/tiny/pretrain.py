"""Pre-training of ``tiny``, the embedded default model, on synthetic captions
(:mod:`vlmq.models.tiny.scenes`): it learns to *see* the domains, never to act in them.

Like a real open VLM, ``tiny`` sees but does not know the action syntax. The tokenizer (byte-level
BPE, trained offline) sees :func:`vlmq.models.tiny.tokenizer.domain_corpus` (generic JSON, digits,
English, tokenisation examples) plus caption text; the *model* is only trained on captions.

Training: all weights, next-token loss on the caption and the end-of-turn token (chat template:
user = image + question, assistant = caption), AdamW with warm-up and cosine decay, a fixed pool
of pre-rendered scenes (questions resampled each step). Everything is seeded: the same ``seed``
and ``steps`` give the same weights on the same machine, thread count and library versions. A run
writes a checkpoint (model, optimizer, step, RNG states) every ``checkpoint_every`` steps into its
output folder and resumes from it when started again, with the same result as an uninterrupted
run. The result is scored on held-out scenes (:mod:`vlmq.models.tiny.evaluate`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmq.models.hub import quiet_loading
from vlmq.models.tiny.batches import Batcher, caption_loss
from vlmq.models.tiny.embedded import (
    ASSET_DIR,
    INFO_FILE,
    TINY_SIZE,
    build_tiny_pretrain,
    image_tokens,
    make_size,
)
from vlmq.models.tiny.evaluate import describe_scenes, domain_summary, heldout_report, score_descriptions
from vlmq.models.tiny.scenes import (
    DOMAINS,
    NUM_HELDOUT,
    Scene,
    heldout_seeds,
    render_scenes,
    scene_captions,
    scene_seeds,
)
from vlmq.utils.progress import progress_bar

CHECKPOINT_FILE = "pretrain_state.pt"
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)  # a pool scene's image once processed


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _samples(scenes: Sequence[Scene], rng: np.random.Generator, n: int) -> Iterator[tuple[int, str, str]]:
    for i in rng.integers(0, len(scenes), size=n):
        qa = scene_captions(scenes[int(i)])
        q, c = qa[int(rng.integers(len(qa)))]
        yield int(i), q, c


def _save_atomic(obj: Any, file: Path) -> None:
    """``torch.save`` to a temporary file, then ``os.replace``: ``file`` is always whole."""
    tmp = file.with_name(f".{file.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, file)


def pretrain_tiny(
    out_dir: str | os.PathLike[str] = ASSET_DIR,
    steps: int = 2000,
    seed: int = 0,
    *,
    batch_size: int = 32,
    lr: float = 2e-3,
    warmup: int = 100,
    weight_decay: float = 0.01,
    num_scenes: int = 4000,
    num_heldout: int = NUM_HELDOUT,
    size: Mapping[str, Any] | None = None,
    domains: Mapping[str, float] | None = None,
    checkpoint_every: int = 250,
    keep_checkpoint: bool = True,
    eval_every: int = 0,
    eval_heldout: int = 100,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Pre-train ``tiny`` on synthetic captions and write a standard HF folder to ``out_dir``:
    model (safetensors) + processor + ``pretrain_info.json`` (returned): steps, first and final loss
    (means over the first / last ``min(50, steps // 10)`` steps), held-out caption accuracy per
    field on ``num_heldout`` scenes per domain (:func:`score_descriptions`, :func:`domain_summary`),
    wall time, seed, size in MB.

    Resumable: every ``checkpoint_every`` steps and at the end, ``out_dir/pretrain_state.pt`` gets
    the model, optimizer, step, losses and RNG states (written atomically); a run that finds one
    continues from it (same result as without the interruption) and refuses one written with other
    settings, except ``steps``: another total, not below the steps already trained, re-times the run
    (a larger one extends it), with the cosine schedule stretched to the new total from the step it
    resumes at (a warm restart; ``info["extended_from"]`` lists the earlier totals).
    ``keep_checkpoint=False`` deletes it once the folder is written. ``eval_every > 0`` also scores
    the first ``eval_heldout`` held-out scenes per domain every that many steps (``info["curve"]``).
    ``domains`` (default :data:`DOMAINS`) are the training shares; the held-out report covers the same
    domains. ``progress``: a progress bar (default: when stderr is a terminal); ``log``: gets a line at
    each checkpoint and evaluation.
    """
    t0 = time.time()
    if threads:
        torch.set_num_threads(threads)
    size = make_size(size) if size is not None else copy.deepcopy(TINY_SIZE)
    domains = dict(DOMAINS if domains is None else domains)
    if num_scenes < 1 or steps < 0:
        raise ValueError(f"need num_scenes >= 1 and steps >= 0, got {num_scenes} and {steps}")
    if unknown := set(domains) - set(DOMAINS):
        raise ValueError(f"unknown domains {sorted(unknown)}; choose from {list(DOMAINS)}")
    progress = sys.stderr.isatty() if progress is None else progress
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    state_file = out / CHECKPOINT_FILE
    run = json.loads(json.dumps(dict(
        steps=steps, seed=seed, batch_size=batch_size, lr=lr, warmup=warmup, weight_decay=weight_decay,
        num_scenes=num_scenes, size=size, domains=domains,
    )))  # fmt: skip
    state: dict[str, Any] | None = None
    extended: list[int] = []  # the earlier totals of this run (``steps`` changed on resume)
    if state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        diff = sorted(k for k in run if k != "steps" and state["run"].get(k) != run[k])
        if diff:
            raise ValueError(f"{state_file} was written by a run with other settings ({', '.join(diff)}); "
                             "use another output folder or delete it")  # fmt: skip
        if steps < int(state["step"]):
            raise ValueError(f"{state_file} has already trained {state['step']} steps; give --steps >= that")
        extended = [int(n) for n in state.get("extended", [])]
        if state["run"]["steps"] != steps:
            extended.append(int(state["run"]["steps"]))

    rng = np.random.default_rng(seed)
    # the pool, rendered and processed 1000 scenes at a time: it keeps the processed pixels, not the
    # env images; the tokenizer sees the first 1000 scenes' captions
    pairs = scene_seeds(num_scenes, seed, domains)
    scenes: list[Scene] = []
    for k in progress_bar(
        range(0, len(pairs), 1000), desc="render train scenes", disable=not progress, leave=False
    ):
        part = render_scenes(pairs[k : k + 1000])
        if not scenes:
            corpus = [f"{q} {c}" for s in part for q, c in scene_captions(s)]
            model, proc = build_tiny_pretrain(size, corpus, seed)
            batcher = Batcher(proc, part)
        else:
            batcher.add(part)
        scenes += [dataclasses.replace(s, image=_NO_IMAGE) for s in part]
    tok_hash = hashlib.sha256(proc.tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    curve_scenes = render_scenes(heldout_seeds(eval_heldout, list(domains))) if eval_every > 0 else []

    torch.manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )
    losses: list[float] = []
    curve: list[dict[str, Any]] = []
    start, train_s, step_s = 0, 0.0, 0.0  # wall time; time in optimizer steps only
    if state is not None:
        if state["tokenizer_sha256"] != tok_hash:
            raise RuntimeError(f"the tokenizer rebuilt for {state_file} differs from the saved run's")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        losses, curve = list(state["losses"]), list(state["curve"])
        start, train_s, step_s = int(state["step"]), float(state["train_s"]), float(state["step_s"])
        say(f"resuming {out} at step {start}/{steps}")

    def checkpoint(done: int) -> None:
        out.mkdir(parents=True, exist_ok=True)
        _save_atomic({
            "run": run, "step": done, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "losses": losses,
            "curve": curve, "train_s": train_s + time.time() - t_start, "step_s": step_s,
            "tokenizer_sha256": tok_hash, "extended": extended,
        }, state_file)  # fmt: skip

    model.train()
    t_start = time.time()
    bar = progress_bar(
        range(start, steps), desc="pretrain tiny", disable=not progress, initial=start, total=steps
    )
    for step in bar:
        t_step = time.time()
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr, warmup)
        batch = batcher.batch(list(_samples(scenes, rng, batch_size)))
        loss = caption_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step_s += time.time() - t_step
        done = step + 1
        if step % 10 == 0 or done == steps:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if eval_every > 0 and (done % eval_every == 0 or done == steps):
            acc = score_descriptions(curve_scenes, describe_scenes(model, proc, curve_scenes))
            curve.append({"step": done, "loss": round(float(np.mean(losses[-50:])), 4), **acc})
            mins = "  ".join(f"{d} {v['min']:.3f}" for d, v in domain_summary(acc).items())
            say(f"step {done}: held-out min field per domain: {mins}")
        if done % max(1, checkpoint_every) == 0 or done == steps:
            checkpoint(done)
            mean = np.mean(losses[-50:])
            say(f"step {done}/{steps}  loss {mean:.4f}  {step_s / done:.3f} s/step  checkpoint {state_file}")
    bar.close()
    train_s += time.time() - t_start

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    with quiet_loading():
        model.save_pretrained(out)
        proc.save_pretrained(out)
    t_eval = time.time()
    acc, heldout_counts = heldout_report(out, num_heldout, list(domains), progress)
    eval_s = time.time() - t_eval
    k = max(1, min(50, steps // 10))  # first / final loss: means over k steps
    files = [
        p
        for p in out.iterdir()
        if p.is_file() and p.name != INFO_FILE and not p.name.startswith((".", "pretrain_state"))
    ]
    mb = sum(p.stat().st_size for p in files) / 2**20
    info = {
        "model": "tiny",
        "architecture": "idefics3",
        "parameters": sum(p.numel() for p in model.parameters()),
        "size": size,
        "image_tokens": image_tokens(size),
        "seed": seed,
        "steps": steps,
        "extended_from": extended,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "num_scenes": num_scenes,
        "num_heldout": num_heldout,
        "heldout_scenes": heldout_counts,
        "domains": domains,
        "first_loss": round(float(np.mean(losses[:k])), 4) if losses else None,
        "final_loss": round(float(np.mean(losses[-k:])), 4) if losses else None,
        "caption_accuracy": acc,
        "caption_pass": domain_summary(acc),
        "curve": curve,
        "train_wall_s": round(train_s, 1),
        "s_per_step": round(step_s / steps, 4) if steps else None,  # optimizer steps only
        "threads": torch.get_num_threads(),
        "eval_wall_s": round(eval_s, 1),
        "wall_s": round(time.time() - t0, 1),
        "size_mb": round(mb, 2),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if not keep_checkpoint:
        state_file.unlink(missing_ok=True)
    return info
