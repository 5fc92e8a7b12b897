"""The policy: loading a HF VLM, LoRA, the critic head, prompts, ``parse_agent``, generation.

``vlmq.models.arch`` is the only module that knows architectures. Heavy imports (torch, transformers,
peft) happen lazily, so ``from vlmq.models.prompts import parse_agent`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Policy": "vlmq.models.policy",
    "PolicyConfig": "vlmq.models.policy",
    "Generation": "vlmq.models.policy",
    "build_prompt": "vlmq.models.prompts",
    "format_response": "vlmq.models.prompts",
    "parse_agent": "vlmq.models.prompts",
    "build_tiny": "vlmq.models.tiny",
    "save_tiny": "vlmq.models.tiny",
    "arch_for": "vlmq.models.arch",
    "pretrain_tiny": "vlmq.models.tiny",
    "resolve_model": "vlmq.models.hub",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vlmq.models' has no attribute {name!r}")
