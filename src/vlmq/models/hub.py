"""Names of the models embedded in the package (no hub needed): ``tiny`` -> ``vlmq/assets/tiny``.

:func:`resolve_model` is the one place where such a name becomes a folder; ``Policy`` calls it when
loading a base model. A local folder of the same name wins (as it does over a hub name).
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EMBEDDED_MODELS: dict[str, Path] = {"tiny": ASSETS / "tiny"}


def resolve_model(name_or_path: str | os.PathLike[str]) -> str:
    """The folder of an embedded model name, else ``name_or_path`` unchanged."""
    name = str(name_or_path)
    if name in EMBEDDED_MODELS and not Path(name).is_dir():
        folder = EMBEDDED_MODELS[name]
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"the embedded model {name!r} is missing from {folder}; rebuild it with `vlmq pretrain-tiny`"
            )
        return str(folder)
    return name
