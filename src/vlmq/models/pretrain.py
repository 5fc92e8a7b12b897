"""Pre-training of ``tiny``, the embedded default model: a small Idefics3 (SmolVLM architecture)
that learns to *see* the domains from synthetic captions, never to act in them.

Data. :func:`render_scene` renders a real scene with our envs (``reset(seed)`` and a few random
valid steps) and reads the true state from the env object; :func:`scene_captions` turns it into
``(question, caption)`` pairs:

- Gym Cards NumberLine: target / current number (digits 0-9: ``max_position`` 5 or 9);
- Blackjack: the dealer's and the player's cards (rank, suit), face-down card, totals;
- EZPoints / Points24: the cards, their values, the formula shown;
- BabyAI (GoToLocal, PickupLoc, PutNextLocal, GoToDoor, UnlockLocal, Open; partial view): what is
  in front of the agent, the objects in view, and reading back the mission (text skill);
- every domain: a JSON description (``{"target": 3, "current": 5}``, ``{"cards": [...]}``, ...),
  which is also the held-out evaluation question (exact match per field).

MiniWoB is skipped: its scenes need a headless Chromium per env (seconds to start, hundreds of MB),
too costly for a minutes-long CPU pre-training, and its DOM only exists inside the browser.

Captions never contain actions, action syntax (no ``action`` key, no ``{"action": ...}``) or policy
advice (what to do next); a caption is never a valid action of its domain (``tests/test_pretrain.py``).
Random valid steps only reach varied states; they are not described. Like a real open VLM, ``tiny``
sees but does not know the action syntax. The tokenizer (byte-level BPE, trained offline) sees
:func:`vlmq.models.tiny.domain_corpus` (generic JSON, digits, English, tokenisation examples) plus
caption text; the *model* is only trained on captions.

Training: all weights, next-token loss on the caption and the end-of-turn token (chat template:
user = image + question, assistant = caption), AdamW with warm-up and cosine decay, a fixed pool
of pre-rendered scenes (questions resampled each step). Everything is seeded: the same ``seed``
and ``steps`` give the same weights on the same machine and library versions. Scene seeds live
in their own range (held-out ones in another), away from the seeds used for RL data and evaluation.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny"  # = hub.EMBEDDED_MODELS["tiny"]
INFO_FILE = "pretrain_info.json"

# The shipped size: ~1.8 M parameters (fp32 ~7 MB), 128 px images, 16 image tokens.
TINY_SIZE: dict[str, Any] = dict(
    image_size=128,
    patch=16,
    sf=2,
    vocab_size=1536,
    vision=dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4),
    text=dict(
        hidden_size=160,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=5,
        num_key_value_heads=5,
        tie_word_embeddings=True,
    ),
)
# For tests: seconds, not minutes.
MICRO_SIZE: dict[str, Any] = dict(
    image_size=32,
    patch=16,
    sf=2,
    vocab_size=600,
    vision=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
    text=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
)

DOMAINS: dict[str, float] = {  # domain -> share of training samples
    "numberline": 0.15,
    "blackjack": 0.25,
    "ezpoints": 0.15,
    "points24": 0.2,
    "babyai": 0.25,
}
BABYAI_LEVELS = ("GoToLocal", "PickupLoc", "PutNextLocal", "GoToDoor", "UnlockLocal", "Open")
SUIT_NAMES = {"S": "spades", "H": "hearts", "D": "diamonds", "C": "clubs"}
DESCRIBE_JSON = "Describe the image as JSON."
TRAIN_SEED_BASE = 1_500_000_000  # + (seed % 500) * 1_000_000 + i
HELDOUT_SEED_BASE = 1_400_000_000  # + i, independent of the pre-training seed


# ----------------------------------------------------------------------------- scenes and captions
@dataclass
class Scene:
    """One rendered scene: the env's image and the true state read from the env object."""

    domain: str
    env_id: str
    seed: int
    image: np.ndarray  # HxWx3 uint8
    facts: dict[str, Any] = field(default_factory=dict)


def card_name(rank: int, suit: str) -> str:
    """``"K of spades"`` (the printed rank label and the suit's name)."""
    from vlmq.envs.gym_cards.render import rank_label

    return f"{rank_label(rank)} of {SUIT_NAMES[suit]}"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _babyai_facts(env: Any) -> dict[str, Any]:
    """What the partial view shows: the cell ahead and the (non-wall) objects in view."""
    from vlmq.envs.babyai import _describe

    inner = env._env
    grid, _ = inner.gen_obs_grid()
    me = (grid.width // 2, grid.height - 1)
    seen: set[str] = set()
    for i in range(grid.width):
        for j in range(grid.height):
            obj = grid.get(i, j)
            if (i, j) != me and obj is not None and obj.type not in ("wall", "floor", "lava"):
                seen.add(f"{obj.color} {obj.type}")
    ahead = grid.get(me[0], me[1] - 1)
    return {
        "ahead": "an empty cell" if ahead is None else _describe(ahead),
        "objects": sorted(seen),
        "mission": str(inner.mission),
    }


def _env_id(domain: str, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    if domain == "numberline":
        return "gym_cards/NumberLine", {"max_position": int(rng.choice([5, 9]))}
    if domain == "babyai":
        return f"babyai/{BABYAI_LEVELS[int(rng.integers(len(BABYAI_LEVELS)))]}", {}
    return {"blackjack": "gym_cards/Blackjack", "ezpoints": "gym_cards/EZPoints"}.get(
        domain, "gym_cards/Points24"
    ), {}


class SceneRenderer:
    """Renders scenes with cached env objects (one per env id and kwargs)."""

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}

    def _env(self, env_id: str, kwargs: dict[str, Any]) -> Any:
        from vlmq.envs import make

        key = f"{env_id}{sorted(kwargs.items())}"
        if key not in self._envs:
            self._envs[key] = make(env_id, **kwargs)
        return self._envs[key]

    def render(self, domain: str, seed: int) -> Scene:
        """Reset the domain's env with ``seed``, take 0..k random valid steps, read the state."""
        rng = np.random.default_rng(seed)
        env_id, kwargs = _env_id(domain, rng)
        env = self._env(env_id, kwargs)
        obs, _ = env.reset(seed=seed)
        for _ in range(int(rng.integers(0, 9 if domain == "babyai" else 4))):
            obs, _, term, trunc, _ = env.step(env.random_action())
            if term or trunc:
                break
        if domain == "numberline":
            facts: dict[str, Any] = {"target": env.target, "current": env.current}
        elif domain == "blackjack":
            dealer = env.dealer if env.revealed else env.dealer[:1]
            facts = {
                "dealer": [card_name(*c) for c in dealer],
                "hidden": not env.revealed,
                "player": [card_name(*c) for c in env.player],
                "player_total": env.player_total(),
                "dealer_total": env.dealer_total() if env.revealed else None,
            }
        elif domain in ("ezpoints", "points24"):
            facts = {
                "cards": [card_name(*c) for c in env.cards],
                "values": list(env.values),
                "formula": env.formula_text(),
            }
        else:
            facts = _babyai_facts(env)
        return Scene(domain, env_id, seed, np.asarray(obs["image"], dtype=np.uint8), facts)

    def close(self) -> None:
        for env in self._envs.values():
            with contextlib.suppress(Exception):
                env.close()
        self._envs.clear()


def describe_json(scene: Scene) -> str:
    """The JSON description of a scene (the held-out evaluation caption)."""
    f = scene.facts
    if scene.domain == "numberline":
        obj: dict[str, Any] = {"target": f["target"], "current": f["current"]}
    elif scene.domain == "blackjack":
        obj = {"dealer": f["dealer"] + (["face down"] if f["hidden"] else []), "player": f["player"]}
    elif scene.domain in ("ezpoints", "points24"):
        obj = {"cards": f["cards"], "formula": f["formula"]}
    else:
        obj = {"ahead": f["ahead"], "objects": f["objects"]}
    return json.dumps(obj)


def scene_captions(scene: Scene) -> list[tuple[str, str]]:
    """All ``(question, caption)`` pairs of a scene (the last one is the JSON description)."""
    f = scene.facts
    qa: list[tuple[str, str]] = []
    if scene.domain == "numberline":
        qa += [
            ("What is the target number?", f"The target number is {f['target']}."),
            ("What is the current number?", f"The current number is {f['current']}."),
            ("What numbers does the image show?", f"The target is {f['target']} and the current number is {f['current']}."),
        ]  # fmt: skip
    elif scene.domain == "blackjack":
        qa.append(
            ("Which cards does the player have?", f"The player has {_join(f['player'])}, a total of {f['player_total']}.")
        )  # fmt: skip
        if f["hidden"]:
            qa.append(
                ("What does the dealer show?", f"The dealer shows {f['dealer'][0]} and one face-down card.")
            )
        else:
            qa.append(
                ("What does the dealer show?", f"The dealer has {_join(f['dealer'])}, a total of {f['dealer_total']}.")
            )  # fmt: skip
        qa.append(("How many cards does the player have?", f"The player has {len(f['player'])} cards."))
    elif scene.domain in ("ezpoints", "points24"):
        formula = f"The formula is {f['formula']}." if f["formula"] else "The formula is empty."
        qa += [
            ("Which cards are shown?", f"The cards are {_join(f['cards'])}."),
            ("What are the values of the cards?", f"The card values are {_join([str(v) for v in f['values']])}."),
            ("What is the current formula?", formula),
        ]  # fmt: skip
    else:
        objects = "no objects" if not f["objects"] else _join([f"a {o}" for o in f["objects"]])
        qa += [
            ("What is directly in front of you?", f"In front of you is {f['ahead']}."),
            ("Which objects can you see?", f"I can see {objects}."),
            (f"Mission: {f['mission']}.\nWhat is the mission?", f"The mission is: {f['mission']}."),
        ]
    qa.append((DESCRIBE_JSON, describe_json(scene)))
    return qa


def scene_seeds(n: int, seed: int, heldout: bool = False) -> list[tuple[str, int]]:
    """``n`` ``(domain, env seed)`` pairs: domains drawn with :data:`DOMAINS`' shares."""
    rng = np.random.default_rng([seed, int(heldout)])
    names = list(DOMAINS)
    probs = np.array([DOMAINS[d] for d in names])
    picks = rng.choice(len(names), size=n, p=probs / probs.sum())
    base = HELDOUT_SEED_BASE if heldout else TRAIN_SEED_BASE + (seed % 500) * 1_000_000
    return [(names[int(k)], base + i) for i, k in enumerate(picks)]


def render_scenes(
    pairs: Sequence[tuple[str, int]], progress: bool = False, desc: str = "scenes"
) -> list[Scene]:
    """Render ``(domain, seed)`` pairs (deterministic)."""
    from tqdm.auto import tqdm

    renderer = SceneRenderer()
    try:
        return [renderer.render(d, s) for d, s in tqdm(pairs, desc=desc, disable=not progress, leave=False)]
    finally:
        renderer.close()


# ----------------------------------------------------------------------------- model and batches
def build_tiny_pretrain(size: dict[str, Any], corpus: list[str], seed: int) -> tuple[torch.nn.Module, Any]:
    """A fresh Idefics3 of ``size`` (see :data:`TINY_SIZE`) and its processor (tokenizer on ``corpus``)."""
    from transformers import AutoModelForImageTextToText

    from vlmq.models.tiny import _idefics3, domain_corpus

    cfg, proc = _idefics3(
        image_size=size["image_size"],
        patch=size["patch"],
        sf=size["sf"],
        vision=dict(size["vision"]),
        text=dict(size["text"]),
        corpus=domain_corpus() + corpus,
        vocab_size=size["vocab_size"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(cfg)
    tok = proc.tokenizer
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model, proc


class Batcher:
    """Turns scenes + (question, caption) pairs into training batches without re-running the image
    processor: images are processed once (stored exactly as uint8) and the expanded image-token
    block is spliced into the chat-templated prompt (same ids as the processor, checked once)."""

    def __init__(self, processor: Any, scenes: Sequence[Scene], progress: bool = False) -> None:
        from PIL import Image
        from tqdm.auto import tqdm

        self.proc = processor
        self.tok = processor.tokenizer
        ip = processor.image_processor
        self._mean = torch.tensor(ip.image_mean).view(3, 1, 1)
        self._std = torch.tensor(ip.image_std).view(3, 1, 1)
        self._scale = float(ip.rescale_factor)
        pix: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for k in tqdm(range(0, len(scenes), 64), desc="images", disable=not progress, leave=False):
            chunk = [[Image.fromarray(s.image)] for s in scenes[k : k + 64]]
            out = ip(chunk, return_tensors="pt")
            pv = out["pixel_values"][:, 0]
            raw = ((pv * self._std + self._mean) / self._scale).round().clamp(0, 255).to(torch.uint8)
            pix.append(raw)
            masks.append(out["pixel_attention_mask"][:, 0].bool())
        self.pixels = torch.cat(pix)
        self.masks = torch.cat(masks)
        probe = processor(text=["<image>"], images=[[Image.fromarray(scenes[0].image)]], return_tensors="pt")
        self.image_block = self.tok.decode(probe["input_ids"][0].tolist(), skip_special_tokens=False)
        if not torch.allclose(self.pixel_values([0])[0], probe["pixel_values"][0], atol=1e-5):
            raise RuntimeError("stored images do not reproduce the image processor's output")
        self.eot = self.tok.convert_tokens_to_ids("<end_of_utterance>")

    def pixel_values(self, idx: Sequence[int]) -> torch.Tensor:
        raw = self.pixels[list(idx)].float()
        return ((raw * self._scale - self._mean) / self._std).unsqueeze(1)

    def prompt_text(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = self.proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text.replace("<image>", self.image_block, 1)

    def batch(self, items: Sequence[tuple[int, str, str]]) -> dict[str, torch.Tensor]:
        """``(scene index, question, caption)`` -> right-padded model inputs + ``labels`` (-100 off caption)."""
        rows: list[tuple[list[int], int]] = []
        for _, q, c in items:
            prompt = self.tok(self.prompt_text(q), add_special_tokens=False)["input_ids"]
            resp = self.tok(c, add_special_tokens=False)["input_ids"] + [self.eot]
            rows.append((prompt + resp, len(prompt)))
        B, T = len(rows), max(len(r) for r, _ in rows)
        ids = torch.full((B, T), int(self.tok.pad_token_id), dtype=torch.long)
        att = torch.zeros((B, T), dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)
        for b, (r, n_prompt) in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            att[b, : len(r)] = 1
            labels[b, n_prompt : len(r)] = ids[b, n_prompt : len(r)]
        idx = [i for i, _, _ in items]
        return {
            "input_ids": ids,
            "attention_mask": att,
            "position_ids": (att.cumsum(-1) - 1).clamp(min=0),
            "pixel_values": self.pixel_values(idx),
            "pixel_attention_mask": self.masks[idx].unsqueeze(1),
            "labels": labels,
        }


def caption_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over caption tokens (+ end of turn)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]
    target = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# ----------------------------------------------------------------------------- evaluation
_CARD = re.compile(r"^(\S+) of (\w+)$")


def _card_fields(true: list[str], pred: Any) -> tuple[int, int]:
    """``(correct ranks, correct suits)`` position by position."""
    pred = pred if isinstance(pred, list) else []
    ranks = suits = 0
    for k, t in enumerate(true):
        mt = _CARD.match(t)
        mp = _CARD.match(pred[k]) if k < len(pred) and isinstance(pred[k], str) else None
        if mt and mp:
            ranks += mt.group(1) == mp.group(1)
            suits += mt.group(2) == mp.group(2)
        elif t == "face down" and k < len(pred):
            ranks += pred[k] == t
            suits += pred[k] == t
    return ranks, suits


def score_descriptions(scenes: Sequence[Scene], texts: Sequence[str]) -> dict[str, float]:
    """Exact-match accuracy per field of generated JSON descriptions against the true state."""
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
        f = scene.facts
        if scene.domain == "numberline":
            add("numberline/target", float(pred.get("target") == f["target"]))
            add("numberline/current", float(pred.get("current") == f["current"]))
        elif scene.domain == "blackjack":
            true = f["dealer"] + (["face down"] if f["hidden"] else []) + f["player"]
            got = list(pred.get("dealer") or []) if isinstance(pred.get("dealer"), list) else []
            dealer_n = len(f["dealer"]) + int(f["hidden"])
            got = (got + [None] * dealer_n)[:dealer_n]
            got += list(pred.get("player") or []) if isinstance(pred.get("player"), list) else []
            r, s = _card_fields(true, got)
            add("blackjack/rank", r, len(true))
            add("blackjack/suit", s, len(true))
        elif scene.domain in ("ezpoints", "points24"):
            r, s = _card_fields(f["cards"], pred.get("cards"))
            add(f"{scene.domain}/rank", r, len(f["cards"]))
            add(f"{scene.domain}/suit", s, len(f["cards"]))
            add(f"{scene.domain}/formula", float(pred.get("formula") == f["formula"]))
        else:
            add("babyai/ahead", float(pred.get("ahead") == f["ahead"]))
            objs = pred.get("objects")
            add("babyai/objects", float(isinstance(objs, list) and sorted(map(str, objs)) == f["objects"]))
    out = {k: round(v[0] / v[1], 4) for k, v in sorted(hits.items()) if v[1]}
    fields = [v for k, v in out.items() if "/" in k]
    out["mean_field"] = round(float(np.mean(fields)), 4) if fields else 0.0
    return out


def evaluate_captions(
    folder: str | os.PathLike[str], scenes: Sequence[Scene], batch_size: int = 32, progress: bool = False
) -> dict[str, float]:
    """Load ``folder`` as a :class:`~vlmq.models.policy.Policy`, describe each scene as JSON (greedy)
    and score it with :func:`score_descriptions`."""
    from tqdm.auto import tqdm

    from vlmq.models.policy import Policy

    policy = Policy.from_pretrained(str(folder))
    texts: list[str] = []
    for k in tqdm(range(0, len(scenes), batch_size), desc="eval", disable=not progress, leave=False):
        chunk = scenes[k : k + batch_size]
        gens = policy.generate(
            [s.image for s in chunk], [DESCRIBE_JSON] * len(chunk), greedy=True, max_new_tokens=64
        )
        texts += [g.text for g in gens]
    return score_descriptions(scenes, texts)


# ----------------------------------------------------------------------------- the recipe
def _samples(scenes: Sequence[Scene], rng: np.random.Generator, n: int) -> Iterator[tuple[int, str, str]]:
    for i in rng.integers(0, len(scenes), size=n):
        qa = scene_captions(scenes[int(i)])
        q, c = qa[int(rng.integers(len(qa)))]
        yield int(i), q, c


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
    num_heldout: int = 200,
    size: dict[str, Any] | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Pre-train ``tiny`` on synthetic captions and write a standard HF folder to ``out_dir``:
    model (safetensors) + processor + ``pretrain_info.json`` (returned): steps, first and final loss
    (means over the first / last ``min(50, steps // 10)`` steps), held-out caption accuracy per field, wall time, seed, size in MB.
    """
    t0 = time.time()
    if threads:
        torch.set_num_threads(threads)
    size = size or TINY_SIZE
    rng = np.random.default_rng(seed)
    scenes = render_scenes(scene_seeds(num_scenes, seed), progress=progress, desc="render train scenes")
    heldout = render_scenes(
        scene_seeds(num_heldout, seed, heldout=True), progress=progress, desc="render held-out"
    )
    corpus = [f"{q} {c}" for s in scenes[:1000] for q, c in scene_captions(s)]
    model, proc = build_tiny_pretrain(size, corpus, seed)
    batcher = Batcher(proc, scenes, progress=progress)

    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc="pretrain tiny", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr, warmup)
        batch = batcher.batch(list(_samples(scenes, rng, batch_size)))
        loss = caption_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    train_s = time.time() - t0

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    proc.save_pretrained(out)
    acc = evaluate_captions(out, heldout, progress=progress)
    k = max(1, min(50, steps // 10))  # first / final loss: means over k steps
    mb = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and p.name != INFO_FILE) / 2**20
    info = {
        "model": "tiny",
        "architecture": "idefics3",
        "parameters": sum(p.numel() for p in model.parameters()),
        "size": size,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "num_scenes": num_scenes,
        "num_heldout": num_heldout,
        "domains": DOMAINS,
        "first_loss": round(float(np.mean(losses[:k])), 4) if losses else None,
        "final_loss": round(float(np.mean(losses[-k:])), 4) if losses else None,
        "caption_accuracy": acc,
        "train_wall_s": round(train_s, 1),
        "wall_s": round(time.time() - t0, 1),
        "size_mb": round(mb, 2),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info
