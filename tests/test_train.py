"""The learner end to end on a tiny model: CLI pipeline, exact resume after SIGKILL, NaN guard."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from vlmq.cli import app
from vlmq.train.checkpoint import latest_checkpoint
from vlmq.train.config import TrainConfig
from vlmq.train.learner import Learner, TrainingDiverged
from vlmq.train.logger import read_metrics


@pytest.mark.slow
def test_pipeline_collect_train_eval_plot(tmp_path: Path, tiny_base: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    r = runner.invoke(app, ["collect", "gym_cards/NumberLine", "-n", "20", "--out", str(data)])
    assert r.exit_code == 0, r.output
    runs = {}
    for filt in ("binary", "none"):
        run = tmp_path / f"run-{filt}"
        args = ["train", "--env", "gym_cards/NumberLine", "--model", str(tiny_base), "--data", str(data)]
        args += ["--filter", filt, "--steps", "8", "--batch-size", "4", "--eval-every", "4", "--lr", "1e-3"]
        args += ["--eval-episodes", "3", "--checkpoint-every", "4", "--out", str(run), "--quiet"]
        args += ["--threshold", "0.01", "--conservative", "0.1"] if filt == "binary" else []
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "greedy/success_rate" in r.output
        loss = TrainConfig.load(run / "config.json").loss
        assert (loss.threshold, loss.conservative) == ((0.01, 0.1) if filt == "binary" else (0.0, 0.0))
        summary = json.loads((run / "summary.json").read_text())
        assert summary["steps"] == 8 and summary["filter"] == filt
        assert [e["step"] for e in summary["evals"]] == [0, 4, 8]
        for name in ("config.json", "metrics.jsonl", "curves.png", "samples.txt", "latest"):
            assert (run / name).is_file(), name
        assert list((run / "tb").iterdir())
        ckpt = latest_checkpoint(run)
        assert ckpt is not None and ckpt.name == "checkpoint-000008"
        runs[filt] = run
        r = runner.invoke(
            app, ["eval", "--env", "gym_cards/NumberLine", "--model", str(run), "--episodes", "3"]
        )
        assert r.exit_code == 0, r.output
        assert "success" in r.output and "valid" in r.output
    # the prompting baseline: the untrained base model
    r = runner.invoke(
        app, ["eval", "--env", "gym_cards/NumberLine", "--model", str(tiny_base), "--episodes", "2"]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["plot", str(runs["binary"]), str(runs["none"]), "--out", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c.png").stat().st_size > 1000
    # the filter changes the update: same data and seed, different adapters
    a = load_file(str(latest_checkpoint(runs["binary"]) / "policy" / "adapter_model.safetensors"))  # type: ignore[operator]
    b = load_file(str(latest_checkpoint(runs["none"]) / "policy" / "adapter_model.safetensors"))  # type: ignore[operator]
    assert any(not torch.equal(a[k], b[k]) for k in a)


RUN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from vlmq.train.config import TrainConfig
    from vlmq.train.learner import train
    if __name__ == "__main__":
        cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
        train(cfg, resume=len(sys.argv) > 2, show_progress=False)
    """
)


def _cfg(base: Path, data: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        env="gym_cards/NumberLine", model=str(base), data=str(data), out=str(out), steps=6, batch_size=4,
        lr=1e-3, eval_every=0, eval_episodes=0, checkpoint_every=2, online=True, online_rounds=2,
        online_episodes=3, online_steps=3, num_envs=2, seed=5,
    )  # fmt: skip


@pytest.mark.slow
def test_resume_after_sigkill_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, tiny_base: Path, random_data: Path
) -> None:
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT)
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    ref = _cfg(tiny_base, random_data, tmp_path / "ref")
    subprocess.run([sys.executable, str(script), json.dumps(ref.to_dict())], check=True, env=env)

    cfg = _cfg(tiny_base, random_data, tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg.to_dict())], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it mid-run, after its second checkpoint
        ck = latest_checkpoint(Path(cfg.out))
        if ck is not None and ck.name >= "checkpoint-000004":
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(Path(cfg.out))
    assert killed_at is not None and killed_at.name < "checkpoint-000012"
    subprocess.run([sys.executable, str(script), json.dumps(cfg.to_dict()), "--resume"], check=True, env=env)

    final_ref = latest_checkpoint(Path(ref.out))
    final = latest_checkpoint(Path(cfg.out))
    assert final_ref is not None and final is not None and final.name == final_ref.name == "checkpoint-000012"
    for f in ("adapter_model.safetensors", "critic_head.safetensors"):
        a, b = load_file(str(final_ref / "policy" / f)), load_file(str(final / "policy" / f))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{f}:{k}")
    # the replay holds the same online rounds (episodes after the checkpoint were rolled back)
    shards = sorted(p.name for p in (Path(cfg.out) / "replay").glob("shard-*.parquet"))
    assert shards == sorted(p.name for p in (Path(ref.out) / "replay").glob("shard-*.parquet"))

    # and its logs hold every record once, like the uninterrupted run's (no redone round twice)
    def records(run: str) -> list[tuple[int, tuple[str, ...]]]:
        return sorted((r["step"], tuple(sorted(r))) for r in read_metrics(Path(run)))

    assert records(cfg.out) == records(ref.out)

    def sections(run: str) -> list[str]:
        return [x for x in (Path(run) / "samples.txt").read_text().splitlines() if x.startswith("## step")]

    assert sections(cfg.out) == sections(ref.out) and len(sections(ref.out)) == 2  # the online rounds


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, tiny_base: Path, random_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = TrainConfig(
        env="gym_cards/NumberLine", model=str(tiny_base), data=str(random_data), out=str(tmp_path / "run"),
        steps=10, batch_size=2, eval_every=0, eval_episodes=0, checkpoint_every=2,
    )  # fmt: skip
    learner = Learner(cfg, show_progress=False)
    import vlmq.train.learner as learner_mod

    real = learner_mod.compute_loss

    def poisoned(policy, batch, loss_cfg, use_target=True):  # type: ignore[no-untyped-def]
        out = real(policy, batch, loss_cfg, use_target)
        if learner.step >= 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(learner_mod, "compute_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 3"):
        learner.run()
    ckpt = latest_checkpoint(Path(cfg.out))
    assert ckpt is not None and ckpt.name == "checkpoint-000002"
    weights = load_file(str(ckpt / "policy" / "critic_head.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_refuses_to_overwrite_a_run(tmp_path: Path, tiny_base: Path, random_data: Path) -> None:
    cfg = TrainConfig(
        env="gym_cards/NumberLine", model=str(tiny_base), data=str(random_data), out=str(tmp_path / "run"),
        steps=2, batch_size=2, eval_every=0, eval_episodes=0, checkpoint_every=2,
    )  # fmt: skip
    Learner(cfg, show_progress=False).run()
    with pytest.raises(FileExistsError, match="--resume"):
        Learner(cfg, show_progress=False)


def test_bad_loss_options_are_clear_errors(tmp_path: Path, random_data: Path) -> None:
    args = ["train", "--env", "gym_cards/NumberLine", "--model", "tiny", "--data", str(random_data)]
    args += ["--out", str(tmp_path / "r")]
    r = CliRunner().invoke(app, [*args, "--conservative", "-1"])
    assert r.exit_code == 2 and "'--conservative': must be >= 0, not -1.0" in r.output
    assert not (tmp_path / "r").exists()
    for bad, why in (("2", "must be > 0 and <= 1, not 2.0"), ("x", "must be a number or 'off', not 'x'")):
        r = CliRunner().invoke(app, [*args, "--forced-prob", bad])
        assert r.exit_code == 2 and f"'--forced-prob': {why}" in r.output
    assert not (tmp_path / "r").exists()


def test_grad_accumulation_averages_micro_batches(tmp_path: Path, tiny_base: Path, random_data: Path) -> None:
    def learner(accum: int, name: str) -> Learner:
        cfg = TrainConfig(
            env="gym_cards/NumberLine", model=str(tiny_base), data=str(random_data), out=str(tmp_path / name),
            steps=2, batch_size=2, grad_accum=accum, eval_every=0, eval_episodes=0, grad_clip=0.0,
            target="online", lr=0.0,  # keep the weights fixed between the two steps
        )  # fmt: skip
        return Learner(cfg, show_progress=False)

    def grads(lr: Learner) -> list[torch.Tensor]:
        return [p.grad.clone() for p in lr.policy.trainable_parameters() if p.grad is not None]

    single = learner(1, "single")  # micro-batches 1 and 2 as separate steps
    single.train_step()
    g1 = grads(single)
    single.train_step()
    g2 = grads(single)
    acc = learner(2, "acc")  # the same two micro-batches accumulated into one step
    acc.train_step()
    g_acc = grads(acc)
    assert len(g_acc) == len(g1) > 0
    for a, b, c in zip(g_acc, g1, g2, strict=True):
        torch.testing.assert_close(a, (b + c) / 2, rtol=1e-4, atol=1e-6)


def test_critic_starts_at_the_data_mean_return(tmp_path: Path, tiny_base: Path, random_data: Path) -> None:
    from vlmq.data.store import EpisodeStore

    cfg = TrainConfig(env="gym_cards/NumberLine", model=str(tiny_base), out=str(tmp_path / "run"),
                      data=str(random_data), steps=1, eval_episodes=0, device="cpu")  # fmt: skip
    learner = Learner(cfg, show_progress=False)
    mean = EpisodeStore(random_data).stats()["mean_return"]
    assert mean < 0 and learner.critic_init_bias == pytest.approx(mean)
    head = learner.policy.critic_head
    assert torch.allclose(head.bias, torch.full_like(head.bias, mean))
    assert head.weight.std().item() == pytest.approx(cfg.critic_init_std, rel=0.05)  # small, not zero
    assert torch.equal(learner.policy.target_head.bias, head.bias)
    assert torch.equal(learner.policy.target_head.weight, head.weight)
    explicit = Learner(TrainConfig(**{**cfg.to_dict(), "out": str(tmp_path / "r2"), "critic_init_bias": -0.5,
                                      "loss": cfg.loss}), show_progress=False)  # fmt: skip
    assert torch.all(explicit.policy.critic_head.bias == -0.5)


def test_threads_sets_the_torch_threads_of_the_run(
    tmp_path: Path, tiny_base: Path, random_data: Path
) -> None:
    before = torch.get_num_threads()
    cfg = TrainConfig(env="gym_cards/NumberLine", model=str(tiny_base), out=str(tmp_path / "run"),
                      data=str(random_data), steps=1, eval_episodes=0, device="cpu", threads=1)  # fmt: skip
    try:
        Learner(cfg, show_progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "threads" not in TrainConfig.load(tmp_path / "run" / "config.json").resume_conflicts(
        TrainConfig(**{**cfg.to_dict(), "threads": 2, "loss": cfg.loss})
    )


def test_filter_warmup_imitates_everything_then_filters_and_ranking_is_logged(
    tmp_path: Path, tiny_base: Path, random_data: Path
) -> None:
    cfg = TrainConfig(env="gym_cards/NumberLine", model=str(tiny_base), out=str(tmp_path / "run"),
                      data=str(random_data), steps=6, filter_warmup_steps=3, log_every=1, rank_every=3,
                      rank_states=4, eval_episodes=0, checkpoint_every=100, device="cpu")  # fmt: skip
    summary = Learner(cfg, show_progress=False).run()
    records = read_metrics(tmp_path / "run")
    passed = {r["step"]: r["train/filter_pass_frac"] for r in records if "train/filter_pass_frac" in r}
    assert [passed[s] for s in (1, 2, 3)] == [1.0, 1.0, 1.0]  # warm-up: every logged token imitated
    assert min(passed[s] for s in (4, 5, 6)) < 1.0  # then the (randomly initialised) critic filters
    ranked = [r["step"] for r in records if "critic/ranking_accuracy" in r]
    assert ranked == [3, 6]
    last = [r["critic/ranking_accuracy"] for r in records if "critic/ranking_accuracy" in r][-1]
    assert summary["ranking_accuracy"] == last


def test_bfloat16_backbone_with_float32_adapters_and_heads(
    tmp_path: Path, tiny_base: Path, random_data: Path
) -> None:
    """The GPU setting (bf16 weights, gradient checkpointing), here on the CPU: trainable parts stay
    float32 and the steps are finite."""
    cfg = TrainConfig(env="gym_cards/NumberLine", model=str(tiny_base), out=str(tmp_path / "run"),
                      data=str(random_data), steps=2, batch_size=2, eval_episodes=0, device="cpu",
                      dtype="bfloat16", gradient_checkpointing=True)  # fmt: skip
    learner = Learner(cfg, show_progress=False)
    params = dict(learner.policy.named_parameters())
    backbone = {p.dtype for n, p in params.items() if n.startswith("model.") and not p.requires_grad}
    assert backbone == {torch.bfloat16}
    assert {p.dtype for p in learner.policy.trainable_parameters()} == {torch.float32}
    assert learner.policy.target_head.weight.dtype == torch.float32
    summary = learner.run()
    assert summary["steps"] == 2
    losses = [r["train/loss"] for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)


def test_logger_truncate_drops_what_a_resume_redoes(tmp_path: Path) -> None:
    from vlmq.train.logger import RunLogger

    log = RunLogger(tmp_path, enabled=True)
    for step in (2, 4, 6):
        log.scalars(step, {"loss": 1.0}, prefix="train/")
        log.text(step, "eval/samples", ["'## step 9 x' -> ''"])  # a sample that looks like a header
    log.scalars(4, {"episodes": 3.0}, prefix="online/")
    log.text(4, "online/samples", ["a", "b"])
    log.truncate(4)  # resumed from the checkpoint at step 4, saved before that step's online round
    assert [(r["step"], sorted(r)) for r in read_metrics(tmp_path)] == [
        (2, ["step", "train/loss"]),
        (4, ["step", "train/loss"]),
    ]
    text = (tmp_path / "samples.txt").read_text()
    assert (
        text == "## step 2 eval/samples\n'## step 9 x' -> ''\n## step 4 eval/samples\n'## step 9 x' -> ''\n"
    )
    log.close()


def test_lr_factor_warms_up_then_stays_or_decays_by_cosine() -> None:
    from vlmq.train.learner import lr_factor

    cfg = TrainConfig(env="gym_cards/NumberLine", model="tiny", out="unused", steps=100, warmup_steps=10,
                      lr_schedule="constant")  # fmt: skip
    const = lr_factor(cfg)
    assert const(0) == pytest.approx(0.1) and const(9) == 1.0 and const(99) == 1.0
    cos = lr_factor(TrainConfig(**{**cfg.to_dict(), "loss": cfg.loss, "lr_schedule": "cosine"}))
    assert cos(0) == pytest.approx(0.1 * (0.1 + 0.9 * 1.0))  # warm-up times the start of the cosine
    assert cos(50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cos(100) == pytest.approx(0.1)  # lr_min_ratio at the last step
