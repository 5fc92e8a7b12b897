"""Pre-training of ``tiny``, the embedded default model: a small Idefics3 (SmolVLM architecture)
that learns to *see* the domains from synthetic captions, never to act in them.

Data. :func:`render_scene` renders a real scene with our envs (``reset(seed)`` and a few random
valid steps) and reads the true state from the env object; :func:`scene_captions` turns it into
``(question, caption)`` pairs:

- Gym Cards NumberLine: target / current number (digits 0-9: ``max_position`` 5 or 9);
- Blackjack: the dealer's and the player's cards (rank, suit), face-down card, totals;
- EZPoints / Points24: the cards, their values, the formula shown;
- BabyAI (GoToLocal, PickupLoc, PutNextLocal, GoToDoor, UnlockLocal, Open; partial view): what is
  in front of the agent, the objects in view (colour and kind, each one counted), and reading
  back the mission (text skill);
- every domain: a JSON description (``{"target": 3, "current": 5}``, ``{"cards": [...]}``, ...),
  which is also the held-out evaluation question.

Evaluation. :func:`score_descriptions` scores generated JSON descriptions field by field against
the true state (:data:`FIELDS`: one exact-match accuracy per ``domain/field``, card fields card by
card, BabyAI objects object by object); :func:`evaluate_captions` describes :func:`heldout_seeds`
scenes (500 unseen scenes per domain by default) with batched greedy decoding, and
:func:`domain_summary` checks each domain's weakest field against :data:`PASS_AT`
(``vlmq pretrain-tiny --eval``).

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
and ``steps`` give the same weights on the same machine, thread count and library versions. A run
writes a checkpoint (model, optimizer, step, RNG states) every ``checkpoint_every`` steps into its
output folder and resumes from it when started again, with the same result as an uninterrupted
run. Scene seeds live in their own range (held-out ones in another), away from the seeds used for
RL data and evaluation. The model's size (:data:`TINY_SIZE`) can be changed with :func:`make_size`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmq.utils.progress import progress_bar

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


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        out[k] = _merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _widen(part: Mapping[str, Any], width: int | None, depth: int | None, what: str) -> dict[str, Any]:
    """``part`` with ``width`` hidden units (same head width, MLP ratio and query/kv-head ratio) and
    ``depth`` layers."""
    out = dict(part)
    if depth is not None:
        out["num_hidden_layers"] = int(depth)
    if width is not None:
        head = part["hidden_size"] // part["num_attention_heads"]
        if width % head:
            raise ValueError(f"{what} width must be a multiple of its head width {head}, got {width}")
        heads = width // head
        out["hidden_size"] = int(width)
        out["num_attention_heads"] = heads
        out["intermediate_size"] = int(
            round(width * part["intermediate_size"] / part["hidden_size"] / 16) * 16
        )
        if "num_key_value_heads" in part:
            group = part["num_attention_heads"] // part["num_key_value_heads"]
            out["num_key_value_heads"] = heads // group if heads % group == 0 else heads
    return out


def check_size(size: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``size`` builds: patches tile the image, the pixel shuffle
    (``sf``) tiles the patch grid, widths split into whole heads."""
    img, patch, sf = int(size["image_size"]), int(size["patch"]), int(size["sf"])
    if img % patch or (img // patch) % sf:
        raise ValueError(f"image_size {img} must be a multiple of patch {patch} x sf {sf}")
    for part in ("vision", "text"):
        d = size[part]
        if d["hidden_size"] % d["num_attention_heads"]:
            raise ValueError(f"{part} hidden_size {d['hidden_size']} is not a multiple of its heads")
    t = size["text"]
    if t["num_attention_heads"] % t.get("num_key_value_heads", t["num_attention_heads"]):
        raise ValueError("text num_attention_heads must be a multiple of num_key_value_heads")


def image_tokens(size: Mapping[str, Any]) -> int:
    """Image tokens the language model sees per image: ``(image_size / patch / sf) ** 2``."""
    return (int(size["image_size"]) // int(size["patch"]) // int(size["sf"])) ** 2


def make_size(
    spec: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    image_size: int | None = None,
    patch: int | None = None,
    sf: int | None = None,
    vocab_size: int | None = None,
    vision_width: int | None = None,
    vision_depth: int | None = None,
    text_width: int | None = None,
    text_depth: int | None = None,
) -> dict[str, Any]:
    """A model size: ``base`` (default :data:`TINY_SIZE`) updated by ``spec`` (a dict, a JSON file or
    JSON text; nested and partial; a ``pretrain_info.json`` gives its ``size``), then by the flags.
    A new width keeps the base's head width, MLP ratio and query/kv-head ratio. Checked with
    :func:`check_size`."""
    size = copy.deepcopy(dict(base or TINY_SIZE))
    if spec is not None:
        if not isinstance(spec, Mapping):
            text = str(spec)
            spec = json.loads(text if text.lstrip().startswith("{") else Path(text).read_text())
        assert isinstance(spec, Mapping)
        size = _merged(size, spec.get("size", spec))
    for key, value in (("image_size", image_size), ("patch", patch), ("sf", sf), ("vocab_size", vocab_size)):
        if value is not None:
            size[key] = int(value)
    size["vision"] = _widen(size["vision"], vision_width, vision_depth, "vision")
    size["text"] = _widen(size["text"], text_width, text_depth, "text")
    check_size(size)
    return size


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
HELDOUT_SEED_BASE = 1_400_000_000  # + domain index * 10_000_000 + i, independent of the pre-training seed

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
NUM_HELDOUT = 500  # held-out scenes per domain for the final report
CHECKPOINT_FILE = "pretrain_state.pt"
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)  # a pool scene's image once processed


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
    """What the partial view shows: the cell ahead and the (non-wall) objects drawn in the view,
    ``"colour kind"`` each, one entry per object (sorted; the carried one is not in view)."""
    from vlmq.envs.babyai import _describe

    inner = env._env
    grid, _ = inner.gen_obs_grid()
    me = (grid.width // 2, grid.height - 1)
    seen: list[str] = []
    for i in range(grid.width):
        for j in range(grid.height):
            obj = grid.get(i, j)
            if (i, j) != me and obj is not None and obj.type not in ("wall", "floor", "lava"):
                seen.append(f"{obj.color} {obj.type}")
    ahead = grid.get(me[0], me[1] - 1)
    return {
        "ahead": "an empty cell" if ahead is None else _describe(ahead),
        "objects": sorted(seen),
        "mission": str(inner.mission),
    }


_COUNT_WORDS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _count_objects(objects: Sequence[str]) -> str:
    """``["red ball", "red ball", "blue key"]`` -> ``"a blue key and two red balls"``."""
    if not objects:
        return "no objects"
    parts = []
    for name, n in sorted(Counter(objects).items()):
        word = _COUNT_WORDS[n] if n < len(_COUNT_WORDS) else str(n)
        parts.append(f"{word} {name}" if n == 1 else f"{word} {name}{'es' if name.endswith('x') else 's'}")
    return _join(parts)


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
                "dealer": [card_name(*c) for c in dealer],  # the visible ones
                "hidden": not env.revealed,
                "player": [card_name(*c) for c in env.player],
                "player_total": env.player_total(),
                "dealer_total": env.dealer_total() if env.revealed else None,  # None: one card hidden
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
    """The JSON description of a scene (the held-out evaluation caption). Blackjack's totals come
    after the cards (read, then add up); ``dealer_total`` is ``null`` while a card is face down."""
    f = scene.facts
    if scene.domain == "numberline":
        obj: dict[str, Any] = {"target": f["target"], "current": f["current"]}
    elif scene.domain == "blackjack":
        obj = {
            "dealer": f["dealer"] + (["face down"] if f["hidden"] else []),
            "player": f["player"],
            "dealer_total": f["dealer_total"],
            "player_total": f["player_total"],
        }
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
        objects = _count_objects(f["objects"])
        qa += [
            ("What is directly in front of you?", f"In front of you is {f['ahead']}."),
            ("Which objects can you see?", f"I can see {objects}."),
            (f"Mission: {f['mission']}.\nWhat is the mission?", f"The mission is: {f['mission']}."),
        ]
    qa.append((DESCRIBE_JSON, describe_json(scene)))
    return qa


def scene_seeds(n: int, seed: int, domains: Mapping[str, float] | None = None) -> list[tuple[str, int]]:
    """``n`` training ``(domain, env seed)`` pairs: domains drawn with ``domains``' shares
    (default :data:`DOMAINS`)."""
    domains = DOMAINS if domains is None else domains
    rng = np.random.default_rng([seed, 0])
    names = list(domains)
    probs = np.array([domains[d] for d in names], dtype=float)
    picks = rng.choice(len(names), size=n, p=probs / probs.sum())
    base = TRAIN_SEED_BASE + (seed % 500) * 1_000_000
    return [(names[int(k)], base + i) for i, k in enumerate(picks)]


def heldout_seeds(
    n_per_domain: int = NUM_HELDOUT, domains: Sequence[str] | None = None
) -> list[tuple[str, int]]:
    """``n_per_domain`` held-out ``(domain, env seed)`` pairs per domain (default all of :data:`DOMAINS`),
    the same whatever the pre-training seed, disjoint from every training seed; a smaller ``n`` is a
    prefix of a larger one."""
    if not 0 <= n_per_domain <= 10_000_000:
        raise ValueError(f"n_per_domain must be in 0..10_000_000, got {n_per_domain}")
    order = list(DOMAINS)
    return [
        (d, HELDOUT_SEED_BASE + order.index(d) * 10_000_000 + i)
        for d in (order if domains is None else domains)
        for i in range(n_per_domain)
    ]


def render_scenes(
    pairs: Sequence[tuple[str, int]], progress: bool = False, desc: str = "scenes"
) -> list[Scene]:
    """Render ``(domain, seed)`` pairs (deterministic)."""
    renderer = SceneRenderer()
    try:
        return [renderer.render(d, s) for d, s in progress_bar(pairs, desc=desc, disable=not progress, leave=False)]
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

        self.proc = processor
        self.tok = processor.tokenizer
        ip = processor.image_processor
        self._mean = torch.tensor(ip.image_mean).view(3, 1, 1)
        self._std = torch.tensor(ip.image_std).view(3, 1, 1)
        self._scale = float(ip.rescale_factor)
        self._pixels: list[torch.Tensor] = []  # uint8 [N, 3, H, W] chunks, joined on first use
        self._masks: list[torch.Tensor] = []
        self.add(scenes, progress)
        probe = processor(text=["<image>"], images=[[Image.fromarray(scenes[0].image)]], return_tensors="pt")
        self.image_block = self.tok.decode(probe["input_ids"][0].tolist(), skip_special_tokens=False)
        if not torch.allclose(self.pixel_values([0])[0], probe["pixel_values"][0], atol=1e-5):
            raise RuntimeError("stored images do not reproduce the image processor's output")
        self.eot = self.tok.convert_tokens_to_ids("<end_of_utterance>")

    def add(self, scenes: Sequence[Scene], progress: bool = False) -> None:
        """Process ``scenes``' images and append them (indices continue after the stored ones)."""
        from PIL import Image

        ip = self.proc.image_processor
        for k in progress_bar(range(0, len(scenes), 64), desc="images", disable=not progress, leave=False):
            chunk = [[Image.fromarray(s.image)] for s in scenes[k : k + 64]]
            out = ip(chunk, return_tensors="pt")
            pv = out["pixel_values"][:, 0]
            raw = ((pv * self._std + self._mean) / self._scale).round().clamp(0, 255).to(torch.uint8)
            self._pixels.append(raw)
            self._masks.append(out["pixel_attention_mask"][:, 0].bool())

    @property
    def pixels(self) -> torch.Tensor:
        """All stored images, uint8 ``[N, 3, H, W]`` as the image processor resized them."""
        if len(self._pixels) > 1:
            self._pixels = [torch.cat(self._pixels)]
        return self._pixels[0]

    @property
    def masks(self) -> torch.Tensor:
        """All stored pixel attention masks, bool ``[N, H, W]``."""
        if len(self._masks) > 1:
            self._masks = [torch.cat(self._masks)]
        return self._masks[0]

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


@contextlib.contextmanager
def _hf_quiet() -> Iterator[None]:
    """No transformers progress bars (weight loading and writing) inside."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(folder: str | os.PathLike[str]) -> tuple[torch.nn.Module, Any]:
    """``(model, processor)`` of a model folder or embedded name (``"tiny"``), in eval mode."""
    from transformers import AutoModelForImageTextToText

    from vlmq.models.arch import load_processor
    from vlmq.models.hub import loading_model, resolve_model

    path = resolve_model(str(folder))
    with _hf_quiet(), loading_model(path):
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


# ----------------------------------------------------------------------------- the recipe
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
    settings. ``keep_checkpoint=False`` deletes it once the folder is written. ``eval_every > 0``
    also scores the first ``eval_heldout`` held-out scenes per domain every that many steps
    (``info["curve"]``). ``domains`` (default :data:`DOMAINS`) are the training shares; the held-out
    report covers the same domains. ``progress``: a progress bar (default: when stderr is a
    terminal); ``log``: gets a line at each checkpoint and evaluation.
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
    if state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state["run"] != run:
            diff = sorted(k for k in run if state["run"].get(k) != run[k])
            raise ValueError(f"{state_file} was written by a run with other settings ({', '.join(diff)}); "
                             "use another output folder or delete it")  # fmt: skip

    rng = np.random.default_rng(seed)
    # the pool, rendered and processed 1000 scenes at a time: it keeps the processed pixels, not the
    # env images; the tokenizer sees the first 1000 scenes' captions
    pairs = scene_seeds(num_scenes, seed, domains)
    scenes: list[Scene] = []
    for k in progress_bar(range(0, len(pairs), 1000), desc="render train scenes", disable=not progress, leave=False):
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
            "tokenizer_sha256": tok_hash,
        }, state_file)  # fmt: skip

    model.train()
    t_start = time.time()
    bar = progress_bar(range(start, steps), desc="pretrain tiny", disable=not progress, initial=start, total=steps)
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
    with _hf_quiet():
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
