"""Device names: ``auto`` is the GPU when there is one, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` if available, else ``cpu``; anything else as ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
