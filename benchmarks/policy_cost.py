"""Cost of the policy, measured for ``run.py``'s ``policy`` section: critic-head overhead, image-feature
cache, batched KV-cached generation.

- forward+backward time of a training step with both heads (actor log-probs + critic TD-style loss with
  the full-vocabulary Q at response positions) vs the LM head only, in the same run -> critic overhead;
- the same two-head step with the image-feature cache vs recomputing the vision tower;
- greedy generation throughput (generated tokens/s): one batched KV-cached call for N prompts vs N
  one-at-a-time calls -> batching speed-up.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from vlmq.envs.base import TaskInfo
from vlmq.models.policy import Policy
from vlmq.models.prompts import build_prompt, format_response

TASK = TaskInfo(
    env_id="gym_cards/Blackjack",
    goal="Win the hand of blackjack against the dealer.",
    action_doc='Reply "hit" to take a card or "stand" to stop.',
    action_example="stand",
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(
    fns: dict[str, Callable[[], Any]], reps: int, device: torch.device, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each function over ``reps`` rounds; the functions alternate within a round,
    so slow drifts of a shared machine hit all of them alike (ratios stay meaningful)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _batch_inputs(n: int, size: int, seed: int = 0) -> tuple[list[np.ndarray], list[str], list[str]]:
    rs = np.random.RandomState(seed)
    images = [(rs.rand(size, size, 3) * 255).astype(np.uint8) for _ in range(n)]
    prompts = [
        build_prompt(TASK, f"Your cards: {7 + i} and {i % 10}. Dealer shows {i % 11}.") for i in range(n)
    ]
    responses = [format_response("hit" if i % 2 else "stand", thoughts="my total is low") for i in range(n)]
    return images, prompts, responses


def _train_step(pol: Policy, batch: dict[str, torch.Tensor], critic: bool, cache: bool) -> None:
    h = pol.hidden(batch, use_feature_cache=cache)
    m = batch["response_mask"][:, 1:]
    act = batch["input_ids"][:, 1:][m]
    hs = h[:, :-1][m]  # states before each response token: only these reach the vocab-sized heads
    logp_all = torch.log_softmax(pol.actor_logits(hs), -1)
    loss = -logp_all.gather(-1, act[:, None]).mean()
    if critic:
        q = pol.critic_q(hs)
        with torch.no_grad():
            v_next = (logp_all.exp() * pol.target_q(hs)).sum(-1)  # V'(s) = sum_a pi(a|s) Q'(s,a)
        q_taken = q.gather(-1, act[:, None]).squeeze(-1)
        loss = loss + ((q_taken - v_next) ** 2).mean()
    loss.backward()
    for p in pol.trainable_parameters():
        p.grad = None


def bench_model(
    name: str, pol: Policy, batch_size: int, reps: int, gen_tokens: int, image_px: int
) -> dict[str, Any]:
    dev = pol.device
    images, prompts, responses = _batch_inputs(batch_size, image_px)
    batch = pol.encode(images, prompts, responses)
    res: dict[str, Any] = {
        "params_total_M": round(sum(p.numel() for p in pol.parameters()) / 1e6, 2),
        "params_trainable_M": round(pol.num_trainable / 1e6, 3),
        "critic_head_params_M": round(pol.critic_head.weight.numel() / 1e6, 3),
        "batch": batch_size,
        "seq_len": int(batch["input_ids"].shape[1]),
        "response_tokens": int(batch["response_mask"].sum()),
    }
    pol.train()
    pol.hidden(batch)  # fill the image-feature cache
    t = _time(
        {
            "two": lambda: _train_step(pol, batch, critic=True, cache=True),
            "lm": lambda: _train_step(pol, batch, critic=False, cache=True),
            "nocache": lambda: _train_step(pol, batch, critic=True, cache=False),
        },
        reps,
        dev,
    )
    res.update(
        fwd_bwd_two_heads_s=round(t["two"], 4),
        fwd_bwd_lm_head_only_s=round(t["lm"], 4),
        critic_overhead_ratio=round(t["two"] / t["lm"], 3),
        fwd_bwd_two_heads_no_feature_cache_s=round(t["nocache"], 4),
        feature_cache_speedup=round(t["nocache"] / t["two"], 3),
    )
    pol.eval()
    counts = {"batched": 0, "single": 0}

    # rollouts see new images: start every generation round with an empty feature cache
    def batched() -> None:
        pol.clear_feature_cache()
        gens = pol.generate(images, prompts, greedy=True, max_new_tokens=gen_tokens)
        counts["batched"] = sum(len(g.token_ids) for g in gens)

    def single() -> None:
        counts["single"] = 0
        pol.clear_feature_cache()
        for im, p in zip(images, prompts, strict=True):
            counts["single"] += len(
                pol.generate([im], [p], greedy=True, max_new_tokens=gen_tokens)[0].token_ids
            )

    t = _time({"batched": batched, "single": single}, reps, dev)
    tps_b, tps_s = counts["batched"] / t["batched"], counts["single"] / t["single"]
    res.update(
        gen_new_tokens_max=gen_tokens,
        gen_batched_s=round(t["batched"], 3),
        gen_single_total_s=round(t["single"], 3),
        gen_batched_tokens_per_s=round(tps_b, 2),
        gen_single_tokens_per_s=round(tps_s, 2),
        gen_batching_speedup=round(tps_b / tps_s, 3),
    )
    print(f"[{name}] " + json.dumps(res), flush=True)
    return res
