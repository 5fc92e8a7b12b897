"""The ``vlmq`` command: one entry point, one subcommand per stage of the data flow.

Each subcommand is a thin wrapper: it parses options and calls library code, so everything the
CLI does is also available from Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import typer

from vlmq.cli_errors import ErrorReportingGroup, fail, number, out_dir, out_file

app = typer.Typer(
    cls=ErrorReportingGroup,
    name="vlmq",
    help="VLM Q-Learning: turn vision-language models into agents and improve them with "
    "advantage-filtered SFT (AFSFT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (also: VLMQ_DEBUG=1)."
    ),
) -> None:
    """VLM Q-Learning: turn vision-language models into agents and improve them with AFSFT.

    Errors are one line on stderr (`error: ...`); VLMQ_DEBUG=1 or --debug shows the traceback.
    """


# --------------------------------------------------------------------------- environments


@app.command("envs")
def envs_cmd(
    domain: str | None = typer.Argument(None, help="Only this domain (gym_cards, babyai, miniwob)."),
) -> None:
    """List the environment domains and tasks (domains whose dependencies are missing are skipped)."""
    from vlmq.envs.registry import list_envs

    specs = list_envs(domain)  # an unknown domain: UnknownEnvError, reported by ErrorReportingGroup
    current = None
    for s in specs:
        if s.domain != current:
            current = s.domain
            typer.echo(f"{current}:")
        typer.echo(f"  {s.env_id:<32} {s.description}")


@app.command("play")
def play_cmd(
    env_id: str = typer.Argument(..., help="Environment id, e.g. gym_cards/Blackjack (see `vlmq envs`)."),
    policy: str = typer.Option(
        "expert", "--policy", "-p", help="random, expert or noisy (epsilon-noisy expert)."
    ),
    episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Number of episodes."),
    seed: int = typer.Option(0, "--seed", callback=number(ge=0), help="Episode i is reset with seed + i."),
    epsilon: float = typer.Option(0.2, "--epsilon", min=0.0, max=1.0, help="Random-action rate of `noisy`."),
    save_frames: str | None = typer.Option(
        None,
        "--save-frames",
        metavar="DIR",
        callback=out_dir,
        help="Write the first episode's frames (PNG) and episode.txt here.",
    ),
    num_envs: int = typer.Option(
        1, "--num-envs", min=1, help="Environments in parallel (one subprocess each; same results)."
    ),
) -> None:
    """Play a scripted policy and print success rate, mean return, valid-action rate and speed."""
    from vlmq.envs.play import POLICIES, play
    from vlmq.envs.registry import spec

    if policy not in POLICIES:
        raise typer.BadParameter(f"choose one of {', '.join(POLICIES)}", param_hint="--policy")
    try:
        spec(env_id)
    except ImportError as exc:
        raise typer.BadParameter(f"{env_id}: missing dependency ({exc})", param_hint="ENV_ID") from None
    stats = play(
        env_id, policy, episodes, seed, epsilon, save_frames, progress=episodes >= 50, num_envs=num_envs
    )
    typer.echo(stats.summary())
    if save_frames is not None:
        typer.echo(f"first episode saved to {save_frames}")


# --------------------------------------------------------------------------- data


@app.command()
def collect(
    env_id: str = typer.Argument(..., help="Environment id, e.g. gym_cards/NumberLine."),
    policy: str = typer.Option("random", "--policy", "-p", help="random, expert, noisy or model."),
    episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Episodes to collect."),
    out: Path = typer.Option(..., "--out", callback=out_dir, help="Dataset folder (created, or appended to)."),
    epsilon: float = typer.Option(0.2, min=0.0, max=1.0, help="Random-action rate of `noisy`."),
    num_envs: int = typer.Option(1, "--num-envs", min=1, help="Environments run side by side."),
    workers: bool = typer.Option(
        None,
        "--workers/--in-process",
        help="Run the --num-envs envs in subprocess workers, or in this process "
        "(default: workers for slow envs such as MiniWoB++ browsers, in-process otherwise).",
        show_default=False,
    ),
    seed: int = typer.Option(0, callback=number(ge=0), help="Episode k is reset with seed + k."),
    model: str = typer.Option(
        None, "--model", help="Policy for --policy model (base model or saved policy)."
    ),
    temperature: float = typer.Option(
        1.0, callback=number(ge=0), help="Sampling temperature of --policy model (0 = greedy)."
    ),
    max_new_tokens: int = typer.Option(24, callback=number(ge=1), help="Response length limit of --policy model."),
) -> None:
    """Collect episodes with a scripted policy or a model into a dataset folder."""
    from vlmq.data.collect import collect as run_collect
    from vlmq.envs.registry import spec

    if policy not in ("random", "expert", "noisy", "model"):
        raise typer.BadParameter("choose random, expert, noisy or model", param_hint="--policy")
    spec(env_id)
    pol = None
    if policy == "model":
        if not model:
            raise typer.BadParameter("--policy model needs --model", param_hint="--model")
        from vlmq.models.policy import Policy

        pol = Policy.from_pretrained(model)
    stats = run_collect(
        env_id, policy, episodes, num_envs=num_envs, asynchronous=workers,
        seed=seed, epsilon=epsilon, model=pol,
        temperature=temperature, max_new_tokens=max_new_tokens, out=out,
    )  # fmt: skip
    typer.echo(stats.summary())
    typer.echo(f"saved to {out}")


data_app = typer.Typer(help="Inspect and combine episode datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


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
        _fail(str(exc))
    except OSError as exc:  # tokenizer not found
        _fail(f"{tokenizer}: cannot load a tokenizer ({exc})".splitlines()[0])
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
        _fail(str(exc))
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
        _fail(str(exc))
    typer.echo(f"{store.num_episodes} episodes -> {out}")


# --------------------------------------------------------------------------- training


@app.command()
def train(
    env: str = typer.Option(None, "--env", help="Environment id, e.g. gym_cards/NumberLine."),
    model: str = typer.Option(None, "--model", help="Base model (hub name or folder) or a saved policy."),
    data: str = typer.Option(None, "--data", help="Offline dataset folder (from `vlmq collect`)."),
    out: Path = typer.Option(
        None, "--out", callback=out_dir, help="Run folder (default runs/<env>-<filter>-seed<seed>)."
    ),
    filter: str = typer.Option("binary", "--filter", help="binary (AFSFT), exp (AWR) or none (SFT)."),
    online: bool = typer.Option(False, "--online", help="After offline steps, train on own episodes."),
    steps: int = typer.Option(200, callback=number(ge=0), help="Offline optimizer steps."),
    batch_size: int = typer.Option(8, callback=number(ge=1), help="Turns per micro-batch and process."),
    grad_accum: int = typer.Option(
        1, callback=number(ge=1),
        help="Micro-batches per optimizer step (global batch: batch size x grad accum x processes).",
    ),
    lr: float = typer.Option(1e-4, callback=number(gt=0), help="AdamW learning rate."),
    lr_schedule: str = typer.Option("cosine", help="After the warm-up: cosine decay to 0.1 x lr, or constant."),
    gamma: float = typer.Option(0.9, callback=number(ge=0, le=1), help="Discount between turns."),
    beta: float = typer.Option(1.0, callback=number(gt=0), help="Exp filter temperature."),
    threshold: float = typer.Option(
        0.0, callback=number(), help="Binary filter: imitate a token when its advantage is at least this (ties pass)."
    ),
    conservative: float = typer.Option(
        0.0, help="Weight of a conservative (CQL) critic term that lowers the Q of tokens the data does not log."
    ),
    turn_lambda: float = typer.Option(
        None, min=0.0, max=1.0,
        help="In-turn lambda of the critic's TD targets (1: every token of a turn targets its outcome; 0: one-step).",
    ),
    forced_prob: str = typer.Option(
        None, help="Binary filter: always imitate a logged token the policy gives at least this probability "
        "(protects the action syntax); 'off' disables.",
    ),
    critic_coef: float = typer.Option(
        None, callback=number(ge=0), help="Weight of the critic loss (default: the AFSFT default; 0 with --filter none: plain SFT)."
    ),
    critic_init_std: float = typer.Option(
        None, callback=number(ge=0), help="Std of the critic head's initial weights (0: zero weights; default: the config's)."
    ),
    filter_warmup_steps: int = typer.Option(
        None, min=0, help="First steps imitate every logged token (filter off) while the critic learns."
    ),
    target: str = typer.Option("polyak", help="Target critic: polyak or online (detached)."),
    tau: float = typer.Option(0.05, callback=number(gt=0, le=1), help="Polyak rate of the target critic."),
    lora_r: int = typer.Option(16, callback=number(ge=1), help="LoRA rank."),
    online_rounds: int = typer.Option(4, callback=number(ge=1), help="Online rounds (collect, then train)."),
    online_episodes: int = typer.Option(16, callback=number(ge=1), help="Episodes collected per online round."),
    online_steps: int = typer.Option(50, callback=number(ge=0), help="Optimizer steps per online round."),
    num_envs: int = typer.Option(
        4, callback=number(ge=1), help="Parallel environments for collection and evaluation."
    ),
    temperature: float = typer.Option(1.0, callback=number(ge=0), help="Sampling temperature for online collection."),
    online_mode: str = typer.Option(
        "sync", help="sync: collect, then train, per round; async: collectors overlap the learner."
    ),
    collectors: int = typer.Option(
        1, min=0, help="async: collector processes started here (more: `vlmq collect-online RUN`)."
    ),
    critic_init_bias: float = typer.Option(
        None, callback=number(), help="Initial Q-value of every token (default: the offline data's mean return)."
    ),
    dtype: str = typer.Option(
        None, help="Backbone weights: float32, bfloat16, float16 (default: bfloat16 on CUDA, else float32)."
    ),
    gradient_checkpointing: bool = typer.Option(
        False, "--gradient-checkpointing", help="Recompute activations in backward (less GPU memory)."
    ),
    eval_every: int = typer.Option(
        100, callback=number(ge=0), help="Evaluate every N steps (0 = only at the end)."
    ),
    eval_episodes: int = typer.Option(20, callback=number(ge=0), help="Episodes per evaluation (0: none)."),
    checkpoint_every: int = typer.Option(50, callback=number(ge=1), help="Checkpoint every N steps."),
    max_new_tokens: int = typer.Option(24, callback=number(ge=1), help="Response length limit."),
    seed: int = typer.Option(0, callback=number(ge=0), help="Seed of everything."),
    device: str = typer.Option(
        "auto", help="auto, cpu, cuda, cuda:1 ... (several processes: auto, cpu or cuda, one device each)."
    ),
    resume: Path = typer.Option(
        None, "--resume", help="Continue the run in this folder from its last checkpoint."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a policy with AFSFT (or SFT / AWR): offline on --data, then online with --online.

    Data-parallel on N processes: `accelerate launch --multi_gpu --num_processes N -m vlmq train ...`
    (also on CPU-only machines; see README, Scaling up).
    """
    from accelerate import PartialState

    from vlmq.algo.afsft import AFSFTConfig
    from vlmq.data.store import EpisodeStore
    from vlmq.envs.registry import spec
    from vlmq.train.config import TrainConfig
    from vlmq.train.learner import CollectorsFailed, TrainingDiverged
    from vlmq.train.learner import train as run_training

    if resume is not None:
        cfg = TrainConfig.load(resume / "config.json") if (resume / "config.json").is_file() else None
        if cfg is None:
            _fail(f"{resume}: not a vlmq run folder (no config.json)")
    else:
        if not env or not model:
            _fail("--env and --model are required (or --resume RUN)")
        if filter not in ("binary", "exp", "none"):
            _fail(f"--filter must be binary, exp or none, not {filter!r}")
        if target not in ("polyak", "online"):
            _fail(f"--target must be polyak or online, not {target!r}")
        if data is None and not online:
            _fail("give --data (offline) and/or --online")
        spec(env)  # before the model loads: an unknown env id, a missing or empty dataset
        if data is not None and not EpisodeStore(data).shards():
            _fail(f"{data}: dataset is empty (no episodes; `vlmq collect` writes some)")
        if not 0 <= conservative < float("inf"):
            _fail(f"--conservative must be >= 0, not {conservative}")
        loss_kw: dict[str, Any] = {} if critic_coef is None else {"critic_coef": critic_coef}
        if turn_lambda is not None:
            loss_kw["turn_lambda"] = turn_lambda
        if forced_prob is not None:
            try:
                loss_kw["forced_prob"] = None if forced_prob == "off" else float(forced_prob)
            except ValueError:
                _fail(f"--forced-prob must be a probability or 'off', not {forced_prob!r}")
            if loss_kw["forced_prob"] is not None and not 0.0 < loss_kw["forced_prob"] <= 1.0:
                _fail(f"--forced-prob must be in (0, 1] or 'off', not {forced_prob!r}")
        cfg_kw: dict[str, Any] = {
            "critic_init_std": critic_init_std, "lr_schedule": lr_schedule, "filter_warmup_steps": filter_warmup_steps,
        }  # fmt: skip
        if online_mode not in ("sync", "async"):
            _fail(f"--online-mode must be sync or async, not {online_mode!r}")
        if lr_schedule not in ("constant", "cosine"):
            _fail(f"--lr-schedule must be constant or cosine, not {lr_schedule!r}")
        if dtype not in (None, "float32", "bfloat16", "float16"):
            _fail(f"--dtype must be float32, bfloat16 or float16, not {dtype!r}")
        run = out or Path("runs") / f"{env.replace('/', '-')}-{filter}-seed{seed}"
        cfg = TrainConfig(
            env=env, model=model, data=data, out=str(run), seed=seed,
            loss=AFSFTConfig.for_filter(
                filter, gamma=gamma, beta=beta, threshold=threshold, conservative=conservative,  # type: ignore[arg-type]
                **loss_kw,
            ),
            target=target, tau=tau, lr=lr, batch_size=batch_size, grad_accum=grad_accum,  # type: ignore[arg-type]
            steps=steps if data else 0, lora_r=lora_r, lora_alpha=2 * lora_r, max_new_tokens=max_new_tokens,
            eval_every=eval_every, eval_episodes=eval_episodes, checkpoint_every=checkpoint_every,
            online=online, online_rounds=online_rounds, online_episodes=online_episodes,
            online_steps=online_steps, num_envs=num_envs, temperature=temperature, device=device,
            online_mode=online_mode, collectors=collectors, critic_init_bias=critic_init_bias,  # type: ignore[arg-type]
            dtype=dtype, gradient_checkpointing=gradient_checkpointing,
            **{k: v for k, v in cfg_kw.items() if v is not None},
        )  # fmt: skip
    try:
        summary = run_training(cfg, resume=resume is not None, show_progress=not quiet)
    except (TrainingDiverged, CollectorsFailed, FileExistsError, FileNotFoundError) as e:
        _fail(str(e))
    if not PartialState().is_main_process:
        return
    final = summary.get("final_eval", {})
    typer.echo(f"run: {cfg.out}  steps: {summary['steps']}  wall: {summary['wall_time_s']} s")
    for k in ("greedy/success_rate", "greedy/mean_return", "greedy/valid_rate", "critic/ranking_accuracy"):
        if k in final:
            typer.echo(f"  {k}: {final[k]:.3f}")
    for w in summary.get("warnings", []):
        typer.echo(f"  warning: {w}")


@app.command("eval")
def eval_cmd(
    env: str = typer.Option(..., "--env", help="Environment id."),
    model: str = typer.Option(
        ..., "--model", help="Base model, saved policy, or a run folder (its last checkpoint)."
    ),
    episodes: int = typer.Option(50, callback=number(ge=1), help="Evaluation episodes."),
    temperature: float = typer.Option(0.0, callback=number(ge=0), help="0 = greedy."),
    num_envs: int = typer.Option(4, callback=number(ge=1), help="Parallel environments."),
    seed: int = typer.Option(1_000_000, callback=number(ge=0), help="First episode seed (training never uses these)."),
    max_new_tokens: int = typer.Option(24, callback=number(ge=1), help="Response length limit."),
    json_out: Path = typer.Option(None, "--json", callback=out_file, help="Also write the results as JSON."),
) -> None:
    """Evaluate a policy (including the untrained base model: the prompting baseline)."""
    from vlmq.envs.registry import spec
    from vlmq.models.policy import Policy
    from vlmq.train.checkpoint import latest_checkpoint
    from vlmq.train.evaluate import evaluate_policy
    from vlmq.utils.io import atomic_write_json

    spec(env)
    path = Path(model)
    ckpt = latest_checkpoint(path) if path.is_dir() else None
    policy = Policy.from_pretrained(str(ckpt / "policy") if ckpt else model)
    stats = evaluate_policy(policy, env, episodes=episodes, temperature=temperature, num_envs=num_envs,
                            seed=seed, max_new_tokens=max_new_tokens)  # fmt: skip
    m = stats.metrics()
    typer.echo(
        f"{env} ({episodes} episodes, {'greedy' if temperature == 0 else f'T={temperature}'}): "
        f"success {m['success_rate']:.3f}  return {m['mean_return']:.3f}  valid {m['valid_rate']:.3f}"
    )
    for s in stats.samples[:3]:
        typer.echo(f"  sample: {s}")
    if json_out:
        atomic_write_json(json_out, {"env": env, "model": model, "episodes": episodes, **m})


@app.command("filter-report")
def filter_report_cmd(
    model: str = typer.Argument(..., help="A run folder (its last checkpoint and filter) or a saved policy."),
    data: str = typer.Option(None, "--data", help="Logged turns to score (default: the run's offline data)."),
    turns: int = typer.Option(64, min=1, help="Turns drawn from the data."),
    seed: int = typer.Option(0, help="Seed of the draw."),
    env: str = typer.Option(
        None, "--env", help="Task whose held-out states probe the critic's ranking (default: the run's)."
    ),
) -> None:
    """Which logged response tokens pass the AFSFT filter, position by position (the critic's view), and
    the critic's ranking accuracy on held-out states (does it prefer the expert's actions?)."""
    from vlmq.algo.afsft import AFSFTConfig
    from vlmq.envs.registry import spec
    from vlmq.models.policy import Policy
    from vlmq.train.checkpoint import latest_checkpoint
    from vlmq.train.config import TrainConfig
    from vlmq.train.filter_report import filter_report, format_report, sample_turns

    path = Path(model)
    ckpt = latest_checkpoint(path) if path.is_dir() else None
    # a run folder: its config.json is a TrainConfig (a base model folder's is the model's)
    run_cfg = TrainConfig.load(path / "config.json") if ckpt and (path / "config.json").is_file() else None
    loss = run_cfg.loss if run_cfg else AFSFTConfig()
    data = data or (run_cfg.data if run_cfg else None)
    if data is None:
        _fail("give --data (the model is not a run folder with offline data)")
    env = env or (run_cfg.env if run_cfg else None)
    if env:
        spec(env)
    try:
        samples = sample_turns(data, turns, seed)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    policy = Policy.from_pretrained(str(ckpt / "policy") if ckpt else model)
    typer.echo(f"{len(samples)} turns of {data}; filter {loss.filter} (threshold {loss.threshold})")
    typer.echo(format_report(filter_report(policy, samples, loss)))
    if env:
        from vlmq.train.ranking import blind_accuracy, build_probes, ranking_accuracy, ranking_verdict

        probes = build_probes(env)
        acc = ranking_accuracy(policy, probes)
        if acc is None:
            typer.echo(f"ranking accuracy: {env} has no in-process scripted expert to probe")
        else:
            chance = blind_accuracy(probes)
            typer.echo(f"ranking accuracy on {len(probes)} held-out states of {env}: {acc:.3f} (chance {chance:.3f})")
            if warning := ranking_verdict(acc, chance):
                typer.echo(f"warning: {warning}")


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run folders to overlay."),
    out: Path = typer.Option(Path("curves.png"), "--out", callback=out_file, help="PNG to write."),
) -> None:
    """Plot learning curves of one or more runs into one PNG (e.g. AFSFT vs SFT)."""
    from vlmq.train.plot import plot_runs

    try:
        typer.echo(str(plot_runs(runs, out)))
    except ValueError as e:
        _fail(str(e))


@app.command("collect-online")
def collect_online_cmd(
    run: Path = typer.Argument(..., help="Run folder of a `vlmq train --online --online-mode async` run."),
    collector_id: int = typer.Option(
        0, "--id", min=0, help="This collector's number (unique per run: its seeds and log)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    rounds: int = typer.Option(None, min=1, help="Stop after this many rounds (default: when the run ends)."),
) -> None:
    """Collect online episodes for a run with its newest published weights, round after round, until
    the learner finishes (asynchronous collection; also from other machines sharing the run folder)."""
    from vlmq.train.collector import run_collector

    try:
        n = run_collector(run, collector_id, device=device, max_rounds=rounds)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"collector {collector_id}: {n} round(s) collected into {run / 'replay'}")


@app.command()
def reproduce(
    out: Path = typer.Option(
        Path("runs/reproduce"), "--out", callback=out_dir, help="Folder for data, runs and results."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Minutes: one task per domain, one seed, a few episodes and steps."
    ),
    tasks: list[str] = typer.Option(None, "--task", help="Only these tasks (repeatable)."),
    seeds: int = typer.Option(None, "--seeds", min=1, help="Number of seeds (0, 1, ...)."),
    model: str = typer.Option(None, "--model", help="Base model (default: the embedded `tiny`)."),
    report_only: bool = typer.Option(
        False, "--report", help="Train nothing: tables from the finished seeds of each task only."
    ),
    jobs: int = typer.Option(
        1, "--jobs", min=1, help="(task, seed) units at once, in worker processes sharing the CPU cores."
    ),
) -> None:
    """Prompting vs SFT vs AFSFT (random and noisy data, offline and online) on every domain; writes
    results.md, results.json and learning curves. Run it again to continue an interrupted run."""
    from vlmq.envs.registry import spec
    from vlmq.train.reproduce import ReproduceConfig, report
    from vlmq.train.reproduce import reproduce as run_reproduce

    overrides: dict[str, object] = {"out": str(out)}
    if tasks:
        overrides["tasks"] = list(tasks)
    if seeds:
        overrides["seeds"] = list(range(seeds))
    if model:
        overrides["model"] = model
    cfg = ReproduceConfig.quick(**overrides) if quick else ReproduceConfig(**overrides)  # type: ignore[arg-type]
    for task in cfg.tasks:
        spec(task)
    try:
        results = report(cfg) if report_only else run_reproduce(cfg, jobs=jobs)
    except (KeyError, ValueError) as e:
        _fail(str(e.args[0] if isinstance(e, KeyError) else e))
    if not results["tasks"]:
        _fail(f"{out}: no finished seeds to report; run `vlmq reproduce` with this --out (without --report) first")
    typer.echo((out / "results.md").read_text())
    typer.echo(f"results: {out / 'results.md'}, {out / 'results.json'}; curves: {out / 'curves'}")


def _fail(message: str, code: int = 1) -> NoReturn:
    """Stop with one clear error line on stderr and exit ``code`` (see :mod:`vlmq.cli_errors`)."""
    fail(message, code)


# --------------------------------------------------------------------------- models
@app.command("models")
def models_cmd() -> None:
    """List the model types tested with vlmq and which features apply (feature cache, prefix-LM, bf16)."""
    from vlmq.models.arch import models_table

    typer.echo(models_table())


@app.command("pretrain-tiny")
def pretrain_tiny_cmd(
    out: Path = typer.Option(
        None, "--out", callback=out_dir,
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

    Training writes a checkpoint into --out every --checkpoint-every steps; the same command run again resumes from it (same result as an uninterrupted run). At the end the folder holds the model and pretrain_info.json with the per-field held-out report.
    """
    import sys
    import time

    from vlmq.models import pretrain as pt

    if threads:
        import torch

        torch.set_num_threads(threads)
    progress = False if quiet else sys.stderr.isatty()
    if evaluate:
        folder = model or "tiny"
        t0 = time.time()
        try:
            acc, counts = pt.heldout_report(folder, scenes, progress=progress)
        except (OSError, ValueError) as e:
            _fail(f"cannot evaluate {folder}: {e}")
        typer.echo(f"model {folder}: {scenes} held-out scenes per domain")
        typer.echo(pt.format_report(acc, counts))
        typer.echo(f"render + describe + score: {time.time() - t0:.1f} s ({sum(counts.values())} scenes)")
        return
    if model:
        _fail("--model is only used with --eval (training writes --out)")
    try:
        size = pt.make_size(
            size_json, image_size=image_size, patch=patch, sf=sf, vision_width=vision_width,
            vision_depth=vision_depth, text_width=text_width, text_depth=text_depth,
        )  # fmt: skip
    except (OSError, ValueError) as e:
        _fail(f"bad model size: {e}")
    shares: dict[str, float] | None = None
    if domains:
        try:
            shares = {k.strip(): float(v) for k, v in (item.split("=") for item in domains.split(","))}
        except ValueError:
            _fail(f"bad --domains {domains!r}: expected name=share,name=share")
    from tqdm.auto import tqdm

    def log(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    dest = out or pt.ASSET_DIR
    try:
        info = pt.pretrain_tiny(
            dest, steps=steps, seed=seed, batch_size=batch_size, lr=lr, warmup=warmup, num_scenes=pool,
            num_heldout=scenes, size=size, domains=shares, checkpoint_every=checkpoint_every, eval_every=eval_every,
            keep_checkpoint=out is not None, progress=progress, log=None if quiet else log,
        )  # fmt: skip
    except ValueError as e:
        _fail(str(e))
    typer.echo(
        f"wrote {dest} ({info['parameters'] / 1e6:.2f} M parameters, {info['size_mb']} MB, "
        f"{info['image_tokens']} image tokens; {info['s_per_step']} s/step, {info['wall_s']:.0f} s)"
    )
    typer.echo(f"loss {info['first_loss']} -> {info['final_loss']}")
    typer.echo(pt.format_report(info["caption_accuracy"], info["heldout_scenes"]))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
