"""Tiny VLMs built offline, and ``tiny``, the embedded default model pre-trained to see the domains.

- :mod:`~vlmq.models.tiny.builders`: tiny random models of the real architectures (``build_tiny``,
  ``save_tiny``) for tests, benchmarks and smoke runs; their tokenizer
  (:mod:`~vlmq.models.tiny.tokenizer`) and chat templates (:mod:`~vlmq.models.tiny.templates`);
- :mod:`~vlmq.models.tiny.embedded`: the embedded ``tiny`` model's size and folder;
- :mod:`~vlmq.models.tiny.scenes`: rendered domain scenes and their captions (the training data);
- :mod:`~vlmq.models.tiny.batches`: caption batches and the caption loss;
- :mod:`~vlmq.models.tiny.evaluate`: scoring captions on held-out scenes;
- :mod:`~vlmq.models.tiny.pretrain`: the resumable pre-training loop (``vlmq pretrain-tiny``).
"""

from __future__ import annotations

from vlmq.models.tiny.batches import Batcher, caption_loss
from vlmq.models.tiny.builders import (
    TINY_ARCHS,
    build_smolvlm_sized,
    build_tiny,
    idefics3,
    save_tiny,
    tiny_model_type,
)
from vlmq.models.tiny.embedded import (
    ASSET_DIR,
    INFO_FILE,
    MICRO_SIZE,
    TINY_SIZE,
    build_tiny_pretrain,
    check_size,
    image_tokens,
    make_size,
)
from vlmq.models.tiny.evaluate import (
    FIELDS,
    PASS_AT,
    describe_scenes,
    domain_summary,
    evaluate_captions,
    format_report,
    heldout_report,
    load_model,
    score_descriptions,
)
from vlmq.models.tiny.pretrain import CHECKPOINT_FILE, pretrain_tiny
from vlmq.models.tiny.scenes import (
    DESCRIBE_JSON,
    DOMAINS,
    NUM_HELDOUT,
    Scene,
    SceneRenderer,
    describe_json,
    heldout_seeds,
    render_scenes,
    scene_captions,
    scene_seeds,
)
from vlmq.models.tiny.templates import LLAVA_TEMPLATE, QWEN_TEMPLATE, SMOLVLM_TEMPLATE, chat_template
from vlmq.models.tiny.tokenizer import domain_corpus, make_tokenizer

__all__ = [
    "ASSET_DIR", "CHECKPOINT_FILE", "DESCRIBE_JSON", "DOMAINS", "FIELDS", "INFO_FILE", "LLAVA_TEMPLATE",
    "MICRO_SIZE", "NUM_HELDOUT", "PASS_AT", "QWEN_TEMPLATE", "SMOLVLM_TEMPLATE", "TINY_ARCHS", "TINY_SIZE",
    "Batcher", "Scene", "SceneRenderer", "build_smolvlm_sized", "build_tiny", "build_tiny_pretrain",
    "caption_loss", "chat_template", "check_size", "describe_json", "describe_scenes", "domain_corpus",
    "domain_summary", "evaluate_captions", "format_report", "heldout_report", "heldout_seeds", "idefics3",
    "image_tokens", "load_model", "make_size", "make_tokenizer", "pretrain_tiny", "render_scenes",
    "save_tiny", "scene_captions", "scene_seeds", "score_descriptions", "tiny_model_type",
]  # fmt: skip
