"""vlmq's plain SFT step against TRL's ``SFTTrainer`` on the same work, for ``run.py``'s ``peer`` section.

Both sides: the shipped ``tiny`` model in the same dtype, the same fresh LoRA (rank, alpha, dropout and
target modules of a vlmq :class:`~vlmq.models.policy.PolicyConfig` with ``lora_lm_head=False``: TRL
refuses an adapter on the LM head), the same NumberLine turns as one batch, AdamW with the same lr and
weight decay, gradient clipping at 1.0, loss on the response (completion) tokens only, no gradient
checkpointing, no mixed precision.

- TRL: ``SFTTrainer(...).train()`` itself, on a dataset of exactly those turns in TRL's standard
  prompt-completion format (the prompt rendered by vlmq's chat template, the image in ``images``), so
  every step's batch comes out of TRL's own collator (``DataCollatorForVisionLanguageModeling``) and
  holds the same turns. No evaluation, no saving, no logging (``report_to="none"``). The step time is
  Trainer's own step, from ``on_step_begin`` to ``on_step_end`` (``training_step``: forward with TRL's
  fused LM head, loss, metrics, backward; then clipping, ``optimizer.step``, scheduler, ``zero_grad``);
  the collation before it is timed on its own.
- vlmq: ``run.sft_loss`` on a batch from ``make_batch`` (backbone pass, LM head at response positions,
  token cross-entropy), backward, clipping, AdamW, scheduler, as ``vlmq.train.learner`` steps; once
  with the image-feature cache (as vlmq trains: a turn seen before skips the vision tower) and once
  without (the same compute as TRL's step).
- ``vlmq train --filter none``: what vlmq's trainer runs for SFT, the AFSFT objective with the filter
  off and ``critic_coef`` 0 (``compute_loss``: critic and target heads at response positions and the
  gradient-free bootstrap pass over the next observations, both unused by the loss), image-feature
  cache on, otherwise the same step.

The vlmq steps run inside TRL's training loop (a callback at ``on_step_end``, outside TRL's timed
window), so the four alternate step by step; the first ``warmup`` rounds are dropped, medians of the
rest. If ``trl`` is not importable the section is skipped with the reason recorded.
"""

from __future__ import annotations

import importlib.metadata as md
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")


def trl_missing() -> str | None:
    """Why TRL cannot be used here, or ``None`` when it can."""
    try:
        import trl  # noqa: F401
    except ImportError as e:
        return f"trl is not importable ({e}); install the bench extra: pip install -e '.[bench]'"
    return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("vlmq", "trl", "transformers", "peft", "accelerate", "datasets", "torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_peer(
    samples: Sequence[Any],
    reps: int,
    sft_loss: Callable[..., torch.Tensor],
    model: str = "tiny",
    device: str = "cpu",
    dtype: str = "float32",
    lr: float = 1e-4,
    warmup: int = 2,
) -> dict[str, Any]:
    """Median step times of vlmq's SFT step (feature cache on and off) and TRL's ``SFTTrainer`` step on
    ``samples`` (one batch of ``len(samples)`` turns); see the module docstring."""
    why = trl_missing()
    if why is not None:
        return {"skipped": why, "versions": _versions()}
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from vlmq.algo.afsft import AFSFTConfig
    from vlmq.data.batches import make_batch
    from vlmq.data.schema import decode_png
    from vlmq.models.policy import Policy, to_pil
    from vlmq.train.objective import compute_loss

    torch.manual_seed(0)
    policy = Policy.from_pretrained(model, dtype=dtype, device=device, lora_lm_head=False)
    dev = policy.device
    batch = make_batch(policy, samples)
    pcfg = policy.config
    target_modules = pcfg.lora_target_modules or policy.arch.lora_targets(pcfg.train_vision, False)
    lora = LoraConfig(
        r=pcfg.lora_r, lora_alpha=pcfg.lora_alpha, lora_dropout=pcfg.lora_dropout,
        target_modules=target_modules, bias="none",
    )  # fmt: skip

    # ---- vlmq: the learner's step with the plain SFT loss
    params = policy.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    policy.train()

    sft_cfg = AFSFTConfig.for_filter("none")

    def vlmq_step(cache: bool | None) -> None:
        """The plain SFT loss with the feature cache on/off; ``None``: ``vlmq train --filter none``."""
        opt.zero_grad(set_to_none=True)
        if cache is None:
            loss = compute_loss(policy, batch, sft_cfg).loss
        else:
            loss = sft_loss(policy, batch, use_feature_cache=cache)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], 1.0)
        opt.step()
        sched.step()
        loss.item()  # the learner logs the loss every step

    # ---- TRL: the same turns as a prompt-completion dataset; TRL's collator builds every batch
    eot = policy.tokenizer.convert_ids_to_tokens(policy.eot_token_id)
    rows = [
        {"images": [to_pil(decode_png(s.image, s.where))], "prompt": policy.render_prompt(s.prompt),
         "completion": s.response + eot}
        for s in samples
    ]  # fmt: skip
    base, proc = Policy._load_base(pcfg.base_model, pcfg)
    times: dict[str, list[float]] = {"trl": [], "vlmq": [], "vlmq_no_cache": [], "vlmq_train_sft": []}
    rounds = warmup + reps
    from transformers import TrainerCallback

    class Interleave(TrainerCallback):
        t0 = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            _sync(dev)
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            _sync(dev)
            times["trl"].append(time.perf_counter() - self.t0)
            for name, cache in (("vlmq", True), ("vlmq_no_cache", False), ("vlmq_train_sft", None)):
                t = time.perf_counter()
                vlmq_step(cache)
                _sync(dev)
                times[name].append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as d:
        args = SFTConfig(
            output_dir=d, per_device_train_batch_size=len(rows), max_steps=rounds, learning_rate=lr,
            weight_decay=0.0, optim="adamw_torch", lr_scheduler_type="constant", max_grad_norm=1.0,
            gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=dev.type == "cpu",
            max_length=None, report_to="none", logging_strategy="no", save_strategy="no",
            eval_strategy="no", disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False,
            seed=0,
        )  # fmt: skip
        trainer = SFTTrainer(
            model=base, args=args, train_dataset=Dataset.from_list(rows), processing_class=proc,
            peft_config=lora, callbacks=[Interleave()],
        )  # fmt: skip
        trl_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        collated = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
        same = _same_work(batch.inputs, collated)
        t_collate = _median_collate(trainer, policy, samples, reps)
        trainer.train()
    med = {k: statistics.median(v[warmup:]) for k, v in times.items()}
    tokens = int(batch.inputs["attention_mask"].sum())
    trl_tokens = int(collated["attention_mask"].sum())
    # the adapters (the critic head, also trainable, gets gradients only on the AFSFT path)
    vlmq_trainable = sum(p.numel() for p in policy.model.parameters() if p.requires_grad)
    return {
        "model": model,
        "batch": len(samples),
        "reps": reps,
        "warmup_steps_dropped": warmup,
        "tokens_per_batch": tokens,
        "trl_tokens_per_batch": trl_tokens,
        "response_tokens_per_batch": int(batch.inputs["response_mask"].sum()),
        "same_work": same,
        "trainable_params": {"vlmq_lora": vlmq_trainable, "trl": trl_trainable},
        "lora": {
            "r": pcfg.lora_r,
            "alpha": pcfg.lora_alpha,
            "dropout": pcfg.lora_dropout,
            "target_modules": target_modules,
            "lm_head": False,
        },
        "lr": lr,
        "vlmq_step_s": round(med["vlmq"], 4),
        "vlmq_no_cache_step_s": round(med["vlmq_no_cache"], 4),
        "trl_step_s": round(med["trl"], 4),
        "vlmq_steps_per_s": round(1 / med["vlmq"], 3),
        "vlmq_no_cache_steps_per_s": round(1 / med["vlmq_no_cache"], 3),
        "trl_steps_per_s": round(1 / med["trl"], 3),
        "vlmq_tokens_per_s": round(tokens / med["vlmq"], 1),
        "vlmq_no_cache_tokens_per_s": round(tokens / med["vlmq_no_cache"], 1),
        "trl_tokens_per_s": round(trl_tokens / med["trl"], 1),
        "vlmq_train_sft_step_s": round(med["vlmq_train_sft"], 4),
        "vlmq_train_sft_steps_per_s": round(1 / med["vlmq_train_sft"], 3),
        "vlmq_train_sft_tokens_per_s": round(tokens / med["vlmq_train_sft"], 1),
        "next_obs_tokens_per_batch": int(batch.next_inputs["attention_mask"].sum())
        if batch.next_inputs
        else 0,
        "vlmq_over_trl": round(med["trl"] / med["vlmq"], 3),
        "vlmq_no_cache_over_trl": round(med["trl"] / med["vlmq_no_cache"], 3),
        "vlmq_train_sft_over_trl": round(med["trl"] / med["vlmq_train_sft"], 3),
        **t_collate,
        "threads": torch.get_num_threads(),
        "versions": _versions(),
    }


def _same_work(vlmq_inputs: dict[str, torch.Tensor], trl_batch: dict[str, Any]) -> dict[str, bool]:
    """Whether TRL's collated batch holds vlmq's tokens, loss positions and pixels (padding aside)."""
    a_ids, a_mask = vlmq_inputs["input_ids"].cpu(), vlmq_inputs["attention_mask"].cpu().bool()
    b_ids, b_mask = trl_batch["input_ids"], trl_batch["attention_mask"].bool()
    T = min(a_ids.shape[1], b_ids.shape[1])
    same_len = bool((a_mask.sum(1) == b_mask.sum(1)).all())
    ids = same_len and bool((a_ids[:, :T][a_mask[:, :T]] == b_ids[:, :T][b_mask[:, :T]]).all())
    # TRL trains on labels[:, 1:] != -100; vlmq on response_mask (the same positions, shifted)
    loss_pos = same_len and bool(
        (vlmq_inputs["response_mask"].cpu()[:, :T] == (trl_batch["labels"][:, :T] != -100)).all()
    )
    pa, pb = vlmq_inputs.get("pixel_values"), trl_batch.get("pixel_values")
    pixels = pa is not None and pb is not None and pa.shape == pb.shape and torch.equal(pa.cpu(), pb)
    return {"input_ids": ids, "loss_positions": loss_pos, "pixel_values": bool(pixels)}


def _median_collate(trainer: Any, policy: Any, samples: Sequence[Any], reps: int) -> dict[str, float]:
    """Batch building, outside both step times: TRL's collator vs vlmq's ``Policy.encode`` of the same
    decoded images, prompts and responses (``make_batch`` also encodes the next observations)."""
    from vlmq.data.schema import decode_png

    rows = [trainer.train_dataset[i] for i in range(len(samples))]
    images = [decode_png(s.image, s.where) for s in samples]
    prompts, responses = [s.prompt for s in samples], [s.response for s in samples]
    t: dict[str, list[float]] = {"trl": [], "vlmq": []}
    for _ in range(max(1, reps // 2)):
        t0 = time.perf_counter()
        trainer.data_collator([dict(r) for r in rows])
        t["trl"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        policy.encode(images, prompts, responses)
        t["vlmq"].append(time.perf_counter() - t0)
    return {
        "trl_collate_s": round(statistics.median(t["trl"]), 4),
        "vlmq_encode_s": round(statistics.median(t["vlmq"]), 4),
    }


def peer_markdown(p: dict[str, Any]) -> list[str]:
    """The ``peer`` table: vlmq's SFT step against TRL's ``SFTTrainer`` (or why it was skipped)."""
    if "skipped" in p:
        return [f"peer (vlmq SFT vs TRL SFTTrainer): skipped: {p['skipped']}"]
    same = ", ".join(f"{k} {'same' if v else 'DIFFERENT'}" for k, v in p["same_work"].items())
    lines = [f"| peer: SFT step, {p['model']}, batch {p['batch']} ({p['tokens_per_batch']} tokens), "
             f"median of {p['reps']} | step s | steps/s | tokens/s | steps/s over TRL's |",
             "|---|---|---|---|---|"]  # fmt: skip
    rows = [("vlmq plain SFT step (image-feature cache, as it trains)", "vlmq"),
            ("vlmq plain SFT step (no feature cache)", "vlmq_no_cache")]  # fmt: skip
    if "vlmq_train_sft_step_s" in p:
        rows.append(("vlmq train --filter none (AFSFT path, critic unused)", "vlmq_train_sft"))
    for label, key in rows:
        ratio = p[key + "_over_trl"]
        lines.append(f"| {label} | {p[key + '_step_s']} | {p[key + '_steps_per_s']} | "
                     f"{p[key + '_tokens_per_s']} | {ratio} |")  # fmt: skip
    lines.append(f"| TRL {p['versions']['trl']} SFTTrainer | {p['trl_step_s']} | {p['trl_steps_per_s']} | "
                 f"{p['trl_tokens_per_s']} | 1.0 |")  # fmt: skip
    lines += ["", f"Batch building (outside the step times): vlmq encode {p['vlmq_encode_s']} s, TRL "
              f"collator {p['trl_collate_s']} s. TRL's batch against vlmq's: {same}."]  # fmt: skip
    return lines
