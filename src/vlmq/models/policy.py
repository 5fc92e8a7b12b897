"""The VLM policy: a Hugging Face image-text-to-text model + LoRA (peft) + a token-level critic head.

One backbone pass (:meth:`Policy.hidden`) gives the final hidden states ``h [B, T, H]``; two heads read
them (the losses that use them: :mod:`vlmq.algo.afsft`):

- the actor, the model's own LM head: ``pi(.|s) = softmax(W_lm h)`` (:meth:`Policy.actor_logits`);
- the critic ``Q(s, .) = W_q h + b_q``, one value per vocabulary token (:meth:`Policy.critic_q`), and
  its target copy (:meth:`Policy.target_q`, Polyak-averaged by :meth:`Policy.update_target`).

Trainable: LoRA adapters on the language model and on the LM head (``lora_lm_head``: a low-rank
correction of the output projection, so tokens the base model rarely emits, such as a new action
syntax, become likely within a few hundred steps; it leaves the input embeddings alone even when the
model ties them), the vision tower frozen unless ``train_vision``, and the critic head. The critic
head starts with bias ``critic_init_bias`` and weights drawn from ``N(0, critic_init_std)`` (seeded;
zero weights when 0, the library default). A zero head gives ``Q = V`` and exactly zero advantages, but
it also sends no gradient into the backbone at the start; the learner draws small weights instead
(``TrainConfig.critic_init_std``) and keeps the filter off while the critic learns
(``TrainConfig.filter_warmup_steps``).

Layout of a saved policy folder (:meth:`Policy.save`): ``policy_config.json`` (the
:class:`PolicyConfig`, incl. the base model's name or absolute path), ``adapter_config.json`` +
``adapter_model.safetensors`` (peft) and ``critic_head.safetensors`` (``critic.*`` and ``target.*``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from vlmq.models.arch import ArchSpec, arch_for, get_submodule, load_processor
from vlmq.models.feature_cache import FeatureCache, ImageLike, image_hash
from vlmq.models.hub import quiet_loading
from vlmq.models.prompts import MAX_NEW_TOKENS

POLICY_CONFIG = "policy_config.json"
HEADS_FILE = "critic_head.safetensors"
MERGED_INFO = "vlmq_merged.json"
# batch keys that are not model inputs
NON_MODEL_KEYS = frozenset({"response_mask", "image_hash"})
# batch keys aligned with input_ids ([B, T]); padded together with it
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")

_ADAPTER_FIELDS = (
    "lora_r", "lora_alpha", "lora_target_modules", "train_vision", "lora_lm_head", "critic_bias",
)  # fmt: skip


@dataclass
class PolicyConfig:
    """How to build a :class:`Policy` (saved with it as ``policy_config.json``)."""

    base_model: str = ""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str | None = None  # regex over module names; None = the architecture's default
    train_vision: bool = False  # also LoRA the vision tower (disables the image-feature cache)
    lora_lm_head: bool = True  # also LoRA the LM head (see module docstring)
    critic_bias: bool = True
    critic_init_std: float = 0.0  # 0 = zero weights (see module docstring)
    critic_init_bias: float = 0.0
    dtype: str = "float32"  # backbone dtype: float32 | bfloat16 | float16
    head_dtype: str = "float32"  # critic heads (Q-values) and returned actor logits
    max_new_tokens: int = MAX_NEW_TOKENS
    feature_cache_size: int = 1024  # cached images (LRU); 0 disables the cache
    attn_implementation: str | None = None  # e.g. "sdpa", "eager"; None = transformers' default
    gradient_checkpointing: bool = False
    seed: int = 0  # critic-head initialisation

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyConfig:
        """Build from a dict, ignoring unknown keys (configs written by other versions)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class HeadOutputs(NamedTuple):
    """What :meth:`Policy.forward` returns: the three heads at the same positions, ``[B, L, V]``."""

    logits: torch.Tensor
    q: torch.Tensor
    q_target: torch.Tensor


@dataclass
class Generation:
    """One generated response: decoded ``text`` (special tokens skipped) and its ``token_ids``
    (no padding; the stop token, end-of-turn or eos, is included when it was produced, then
    ``finished``; else the answer was cut off at ``max_new_tokens``)."""

    text: str
    token_ids: list[int]
    finished: bool


def to_pil(image: ImageLike) -> Image.Image:
    """RGB PIL image from a PIL image or an ``HxWx3`` (or ``HxW``) uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def _untie_adapted_lm_head(base: nn.Module) -> None:
    """Give a LoRA-adapted LM head its own copy of a weight it shares with the input embeddings (and
    mark the config untied), so that merging the adapter changes the output projection only."""
    head = base.get_output_embeddings()
    layer = getattr(head, "base_layer", None)
    if layer is None or layer.weight is not base.get_input_embeddings().weight:
        return
    layer.weight = nn.Parameter(layer.weight.detach().clone(), requires_grad=False)
    for cfg in (base.config, getattr(base.config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "tie_word_embeddings"):
            cfg.tie_word_embeddings = False


def _resolve(name_or_path: str | os.PathLike[str]) -> str:
    """Local folders become absolute paths (so a saved policy finds its base); hub names stay."""
    p = Path(name_or_path).expanduser()
    return str(p.resolve()) if p.is_dir() else str(name_or_path)


class Policy(nn.Module):
    """HF VLM + LoRA + critic head (see module docstring). Build with :meth:`from_pretrained`."""

    def __init__(
        self, base: nn.Module, processor: Any, config: PolicyConfig, adapter_dir: str | None = None
    ) -> None:
        from peft import LoraConfig, PeftModel, get_peft_model

        super().__init__()
        self.config = config
        self.arch: ArchSpec = arch_for(base, processor)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        base.requires_grad_(False)
        if config.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if adapter_dir is not None:
            with quiet_loading():
                self.model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)
        else:
            lcfg = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=config.lora_target_modules
                or self.arch.lora_targets(config.train_vision, config.lora_lm_head),
                bias="none",
            )
            with quiet_loading():
                self.model = get_peft_model(base, lcfg)
        lm_head = base.get_output_embeddings()
        cap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
        self.logit_softcap: float | None = float(cap) if cap else None
        """``cap * tanh(logits / cap)`` after the LM head, as the model's own forward (Gemma 2)."""
        self.hidden_size: int = lm_head.in_features
        self.vocab_size: int = lm_head.out_features
        hd = getattr(torch, config.head_dtype)
        dev = lm_head.weight.device
        self.critic_head = nn.Linear(
            self.hidden_size, self.vocab_size, bias=config.critic_bias, dtype=hd, device=dev
        )
        gen = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            w = torch.zeros(self.critic_head.weight.shape, dtype=torch.float32)
            if config.critic_init_std > 0:
                w.normal_(0.0, config.critic_init_std, generator=gen)
            self.critic_head.weight.copy_(w)
            if self.critic_head.bias is not None:
                self.critic_head.bias.fill_(config.critic_init_bias)
        self.target_head = copy.deepcopy(self.critic_head).requires_grad_(False)

        tok = self.tokenizer
        eot = tok.convert_tokens_to_ids(self.arch.eot_token) if self.arch.eot_token else None
        if eot is None or eot == tok.unk_token_id:
            eot = tok.eos_token_id
        self.eot_token_id: int = int(eot)
        stops = {self.eot_token_id}
        if tok.eos_token_id is not None:
            stops.add(int(tok.eos_token_id))
        gen_eos = getattr(getattr(base, "generation_config", None), "eos_token_id", None)
        stops.update([gen_eos] if isinstance(gen_eos, int) else list(gen_eos or []))
        self.stop_token_ids: list[int] = sorted(stops)
        keys = ("image_token_id", "image_token_index", "video_token_id")
        holders = {getattr(base.config, k, None) for k in keys}
        self.placeholder_token_ids: list[int] = sorted(int(t) for t in holders if isinstance(t, int))
        """Image/video placeholder tokens: ``generate`` never samples them, as a response holding one
        would not match the image features in the learner's pass over the stored ids."""
        pad = tok.pad_token_id
        self.pad_token_id: int = int(pad if pad is not None else self.eot_token_id)
        self.feature_cache = FeatureCache(self.arch.image_features)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        config: PolicyConfig | None = None,
        *,
        device: str | torch.device | None = None,
        **overrides: Any,
    ) -> Policy:
        """Load a base HF model (hub name or folder) with fresh LoRA + critic head, or a saved vlmq
        policy folder (one with ``policy_config.json``: base by its recorded name, then adapters and
        heads). ``overrides`` replace :class:`PolicyConfig` fields. A base folder written by
        :meth:`merge` also restores its critic head from ``critic_head.safetensors``.
        """
        path = Path(name_or_path).expanduser()
        if (path / POLICY_CONFIG).is_file():
            saved = json.loads((path / POLICY_CONFIG).read_text())
            cfg = PolicyConfig.from_dict(saved.get("config", saved))
            if config is not None:
                cfg = dataclasses.replace(config, base_model=cfg.base_model)
            # the saved adapters fix the LoRA shape: overrides of those fields are ignored
            fixed = {k: getattr(cfg, k) for k in _ADAPTER_FIELDS}
            cfg = dataclasses.replace(cfg, **{**overrides, **fixed})
            base, proc = cls._load_base(cfg.base_model, cfg)
            policy = cls(base, proc, cfg, adapter_dir=str(path))
            policy.load_heads(path / HEADS_FILE)
        else:
            cfg = dataclasses.replace(
                config or PolicyConfig(), base_model=_resolve(name_or_path), **overrides
            )
            base, proc = cls._load_base(cfg.base_model, cfg)
            policy = cls(base, proc, cfg)
            if (path / HEADS_FILE).is_file():
                policy.load_heads(path / HEADS_FILE)
        if device is not None:
            policy.to(device)
        return policy

    @staticmethod
    def _load_base(name_or_path: str, cfg: PolicyConfig) -> tuple[nn.Module, Any]:
        from transformers import AutoModelForImageTextToText

        from vlmq.models.hub import loading_model, resolve_model

        name_or_path = resolve_model(name_or_path)  # embedded names ("tiny") -> package folder
        kwargs: dict[str, Any] = {"dtype": getattr(torch, cfg.dtype)}
        if cfg.attn_implementation:
            kwargs["attn_implementation"] = cfg.attn_implementation
        with quiet_loading(), loading_model(name_or_path):
            base = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
            proc = load_processor(name_or_path, base.config.model_type)
        return base, proc

    def load_heads(self, file: str | os.PathLike[str]) -> None:
        """Load ``critic.*`` (and ``target.*`` when present, else a copy of the critic) from safetensors."""
        from safetensors.torch import load_file

        sd = load_file(str(file), device=str(self.device))
        critic = {k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith("critic.")}
        target = {k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith("target.")}
        self.critic_head.load_state_dict(critic)
        self.target_head.load_state_dict(target or critic)

    def load_weights(self, directory: str | os.PathLike[str]) -> None:
        """Replace the adapters and heads with those of a saved policy folder (:meth:`save`) of the
        same base and LoRA shape, without reloading the base model: how a collector follows the
        learner's published weights."""
        from peft import load_peft_weights, set_peft_model_state_dict

        path = Path(directory)
        if not (path / POLICY_CONFIG).is_file():
            raise FileNotFoundError(f"{path}: not a saved vlmq policy (no {POLICY_CONFIG})")
        saved = PolicyConfig.from_dict(json.loads((path / POLICY_CONFIG).read_text())["config"])
        mine = {k: getattr(self.config, k) for k in ("base_model", *_ADAPTER_FIELDS)}
        theirs = {k: getattr(saved, k) for k in mine}
        if mine != theirs:
            raise ValueError(f"{path}: adapters of another base or shape ({theirs} vs {mine})")
        result = set_peft_model_state_dict(self.model, load_peft_weights(str(path), device=str(self.device)))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{path}: unexpected adapter weights {result.unexpected_keys[:3]}")
        self.load_heads(path / HEADS_FILE)
        self.clear_feature_cache()

    # ------------------------------------------------------------------ saving
    def _heads_state(self) -> dict[str, torch.Tensor]:
        sd = {f"critic.{k}": v for k, v in self.critic_head.state_dict().items()}
        sd.update({f"target.{k}": v for k, v in self.target_head.state_dict().items()})
        return {k: v.detach().contiguous().cpu() for k, v in sd.items()}

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write adapters + critic/target heads + ``policy_config.json`` (safetensors) into ``directory``."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        # adapters only: peft would otherwise save the whole (vocabulary-sized) LM head it adapts
        self.model.save_pretrained(str(out), save_embedding_layers=False)
        save_file(self._heads_state(), str(out / HEADS_FILE))
        meta = {"config": dataclasses.asdict(self.config), "model_type": self.arch.name, "format": 1}
        (out / POLICY_CONFIG).write_text(json.dumps(meta, indent=2))
        return out

    def merge(self, directory: str | os.PathLike[str]) -> Path:
        """Write a standalone model folder: base + LoRA merged (``AutoModelForImageTextToText``
        loadable), the processor, and ``critic_head.safetensors`` beside it. ``self`` is unchanged."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        model = copy.deepcopy(self.model)
        _untie_adapted_lm_head(model.get_base_model())
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out))
        del merged
        self.processor.save_pretrained(str(out))
        save_file(self._heads_state(), str(out / HEADS_FILE))
        info = {"merged_from": self.config.base_model, "config": dataclasses.asdict(self.config)}
        (out / MERGED_INFO).write_text(json.dumps(info, indent=2))
        return out

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.critic_head.weight.device

    @property
    def base_model(self) -> nn.Module:
        """The HF ``*ForConditionalGeneration`` model (LoRA layers injected)."""
        return self.model.get_base_model()

    @property
    def backbone(self) -> nn.Module:
        """The HF ``*Model`` (vision + language model, no LM head); returns final hidden states."""
        return self.base_model.model

    @property
    def language_model(self) -> nn.Module:
        return get_submodule(self.base_model, self.arch.lm_path)

    @property
    def lm_head(self) -> nn.Module:
        return self.base_model.get_output_embeddings()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """LoRA adapters + critic head (the target head is never trained)."""
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    # ------------------------------------------------------------------ prompts and batches
    def render_prompt(self, prompt: str) -> str:
        """One user turn (image + ``prompt``) + the assistant generation prompt, as text."""
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.arch.render_fallback(prompt)

    def encode(
        self,
        images: Sequence[ImageLike],
        prompts: Sequence[str],
        responses: Sequence[str] | None = None,
        response_ids: Sequence[Sequence[int] | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenise a batch of turns (one image each) on :attr:`device`.

        With ``responses``: prompt + response + end-of-turn token, right padded, plus
        ``response_mask`` (True on response tokens incl. the end-of-turn token). Without: left padded
        prompts ending with the generation prompt, so position ``-1`` is the state before the first
        response token. Always: ``input_ids``, ``attention_mask``, the vision inputs the model needs
        (``pixel_values``, ``image_grid_thw``, ``mm_token_type_ids``, ...) and ``image_hash [B]``.
        Response text is tokenised on its own and appended to the prompt ids, exactly as a generated
        response follows its prompt. A row whose ``response_ids[b]`` is not ``None`` (the ids a model
        sampled, :attr:`Generation.token_ids`) gets exactly those ids as its response instead, with no
        end-of-turn token added: a cut-off generation stays open, a finished one already ends with
        its stop token. The prompt tokens are the same either way.
        """
        if len(images) != len(prompts) or (responses is not None and len(responses) != len(prompts)):
            raise ValueError("images, prompts (and responses) must have the same length")
        if response_ids is not None and (responses is None or len(response_ids) != len(prompts)):
            raise ValueError("response_ids needs responses and one entry (or None) per prompt")
        pil = [to_pil(im) for im in images]
        texts = [self.render_prompt(p) for p in prompts]
        proc_images: list[Any] = [[im] for im in pil] if self.arch.nest_images else pil
        enc = self.processor(text=texts, images=proc_images, return_tensors="pt", padding=True)
        valid = enc["attention_mask"].bool()
        keys = [k for k in TOKEN_KEYS if k in enc and k != "attention_mask"]
        rows: list[dict[str, torch.Tensor]] = []
        resp_lens: list[int] = []
        for b in range(len(texts)):
            row = {k: enc[k][b][valid[b]] for k in keys}
            n_resp = 0
            if responses is not None:
                ids = self._response_tokens(responses[b], None if response_ids is None else response_ids[b])
                ids = torch.tensor(ids, dtype=row["input_ids"].dtype)
                n_resp = len(ids)
                for k in keys:
                    ext = ids if k == "input_ids" else torch.zeros(n_resp, dtype=row[k].dtype)
                    if k == "token_type_ids" and self.arch.prefix_lm:
                        ext = torch.ones(n_resp, dtype=row[k].dtype)  # the causal suffix
                    row[k] = torch.cat([row[k], ext])
            rows.append(row)
            resp_lens.append(n_resp)
        B, T = len(rows), max(len(r["input_ids"]) for r in rows)
        out: dict[str, torch.Tensor] = {}
        for k in keys:
            fill = self.pad_token_id if k == "input_ids" else 0
            out[k] = torch.full((B, T), fill, dtype=enc[k].dtype)
        out["attention_mask"] = torch.zeros((B, T), dtype=enc["attention_mask"].dtype)
        if responses is not None:
            out["response_mask"] = torch.zeros((B, T), dtype=torch.bool)
        for b, row in enumerate(rows):
            n = len(row["input_ids"])
            sl = slice(0, n) if responses is not None else slice(T - n, T)
            for k in keys:
                out[k][b, sl] = row[k]
            out["attention_mask"][b, sl] = 1
            if responses is not None:
                out["response_mask"][b, n - resp_lens[b] : n] = True
        for k, v in enc.items():
            if k not in out and k != "labels" and isinstance(v, torch.Tensor):  # PaliGemma adds labels
                out[k] = v
        out["image_hash"] = torch.tensor([image_hash(im) for im in pil], dtype=torch.long)
        return {k: v.to(self.device) for k, v in out.items()}

    def _response_tokens(self, text: str, sampled: Sequence[int] | None) -> list[int]:
        """A response's training tokens: ``sampled`` ids as they are, else ``text`` + end-of-turn."""
        if sampled is None:
            return [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.eot_token_id]
        ids = [int(t) for t in sampled]
        bad = [t for t in ids if not 0 <= t < self.vocab_size or t in self.placeholder_token_ids]
        if bad:
            raise ValueError(f"response ids {bad} are outside the vocabulary or image placeholders")
        return ids

    # ------------------------------------------------------------------ backbone and heads
    def _model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        inputs: dict[str, Any] = {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
        if self.arch.position_ids_from_mask and "position_ids" not in inputs:
            first = self.arch.first_position
            inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1 + first).clamp(min=first)
        return inputs

    @property
    def cache_hits(self) -> int:
        """Images whose features came from the feature cache."""
        return self.feature_cache.hits

    @property
    def cache_misses(self) -> int:
        """Images whose features were computed (and cached)."""
        return self.feature_cache.misses

    def feature_cache_enabled(self) -> bool:
        """Image features are cached when the vision tower is frozen and the cache has room."""
        return (
            self.config.feature_cache_size > 0 and not self.config.train_vision and not self.feature_cache.off
        )

    def clear_feature_cache(self) -> None:
        """Forget cached image features (call after changing the vision tower's weights)."""
        self.feature_cache.clear()

    def _use_cached_features(self, batch: dict[str, torch.Tensor], inputs: dict[str, Any]) -> None:
        """Swap the pixel inputs for (cached) image features (:meth:`FeatureCache.use`)."""
        self.feature_cache.use(
            self.backbone,
            batch,
            inputs,
            max_size=self.config.feature_cache_size,
            pixel_keys=self.arch.pixel_keys,
            device=self.device,
        )

    def hidden(self, batch: dict[str, torch.Tensor], use_feature_cache: bool | None = None) -> torch.Tensor:
        """Final (normed) hidden states ``[B, T, H]`` in one backbone pass.

        Image features come from the cache (keyed by ``image_hash``) when it is enabled; the result
        equals the uncached pass (``use_feature_cache=False``).
        """
        inputs = self._model_inputs(batch)
        if use_feature_cache is None:
            use_feature_cache = self.feature_cache_enabled()
        if use_feature_cache and "image_hash" in batch and "pixel_values" in inputs:
            self._use_cached_features(batch, inputs)
        out = self.backbone(**inputs, use_cache=False)
        return out.last_hidden_state

    def actor_logits(self, h: torch.Tensor) -> torch.Tensor:
        """The LM head on hidden states ``[..., H] -> [..., V]`` (as ``head_dtype``), soft-capped
        where the model caps its logits, so they are the logits ``generate`` samples from."""
        logits = self.lm_head(h)
        if self.logit_softcap is not None:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits.to(getattr(torch, self.config.head_dtype))

    def critic_q(self, h: torch.Tensor) -> torch.Tensor:
        """Q-values of every vocabulary token, ``[..., H] -> [..., V]``."""
        return self.critic_head(h.to(self.critic_head.weight.dtype))

    def target_q(self, h: torch.Tensor) -> torch.Tensor:
        """Target-critic Q-values (no gradient to the target head), ``[..., H] -> [..., V]``."""
        return self.target_head(h.to(self.target_head.weight.dtype))

    @torch.no_grad()
    def update_target(self, tau: float = 1.0) -> None:
        """Polyak averaging ``target <- (1 - tau) target + tau critic``; ``tau=1`` copies exactly."""
        for pt, p in zip(self.target_head.parameters(), self.critic_head.parameters(), strict=True):
            if tau >= 1.0:
                pt.copy_(p)
            else:
                pt.lerp_(p, tau)

    def forward(self, batch: dict[str, torch.Tensor], positions: torch.Tensor | None = None) -> HeadOutputs:
        """Actor logits, Q and target Q (no gradient), each ``[B, L, V]``, at ``positions [B, L]`` of one
        backbone pass (all ``T`` positions when ``None``). The learner's passes go through ``forward``
        because a data-parallel wrapper (DDP) syncs the gradients of what its ``forward`` computes."""
        h = self.hidden(batch)
        if positions is not None:
            h = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))
        with torch.no_grad():
            q_target = self.target_q(h)
        return HeadOutputs(self.actor_logits(h), self.critic_q(h), q_target)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        images: Sequence[ImageLike],
        prompts: Sequence[str],
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> list[Generation]:
        """Answer a batch of (image, prompt) turns in one KV-cached ``generate`` call (left padded).

        Image features go through the feature cache (when enabled), so the learner's later pass over
        the same turn skips the vision tower. Stops each row at the end-of-turn token or eos; never
        samples an image placeholder token. ``greedy`` (or ``temperature <= 0``) takes the argmax;
        otherwise samples with ``temperature`` and nucleus ``top_p``; ``seed`` makes sampling
        reproducible without touching the global RNG.
        """
        from transformers import GenerationConfig

        if not prompts:
            return []
        batch = self.encode(images, prompts)
        inputs = {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
        if self.feature_cache_enabled() and "pixel_values" in inputs:
            # reuse cached image features and leave this turn's in the cache for the learner
            self._use_cached_features(batch, inputs)
        T = inputs["input_ids"].shape[1]
        sample = not greedy and temperature > 0
        gcfg = GenerationConfig(
            max_new_tokens=max_new_tokens or self.config.max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=0 if sample else None,
            eos_token_id=self.stop_token_ids,
            pad_token_id=self.pad_token_id,
            suppress_tokens=self.placeholder_token_ids or None,
            use_cache=True,
        )
        was_training = self.training
        self.eval()
        try:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                out = self.model.generate(**inputs, generation_config=gcfg)
        finally:
            self.train(was_training)
        stops = set(self.stop_token_ids)
        gens: list[Generation] = []
        for row in out[:, T:].tolist():
            ids: list[int] = []
            finished = False
            for t in row:
                ids.append(t)
                if t in stops:
                    finished = True
                    break
            gens.append(Generation(self.tokenizer.decode(ids, skip_special_tokens=True), ids, finished))
        return gens
