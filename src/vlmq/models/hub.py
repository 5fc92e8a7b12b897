"""Names of the models embedded in the package (no hub needed): ``tiny`` -> ``vlmq/assets/tiny``.

:func:`resolve_model` is the one place where such a name becomes a folder; ``Policy`` calls it when
loading a base model. A local folder of the same name wins (as it does over a hub name).
:func:`loading_model` turns what transformers raises for a name that loads nothing into one
:class:`ModelLoadError` line that says why and what to give instead; :func:`quiet_loading` hides
transformers' progress bars and the warnings loading prints.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
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


class ModelLoadError(OSError):
    """A model name or folder that loads nothing; the message says why and what to give instead."""


@contextlib.contextmanager
def loading_model(name_or_path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise the ``OSError`` / ``ValueError`` of loading ``name_or_path`` as a :class:`ModelLoadError`.

    huggingface_hub's warnings (one "Retrying in Ns" line per retry when the hub is unreachable) are
    held back meanwhile: the one-line error says what happened.
    """
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_explain(str(name_or_path), exc)) from exc
    finally:
        hub_logger.setLevel(level)


def _explain(name: str, exc: BaseException) -> str:
    hint = "a model folder, a saved vlmq policy, a run folder with a checkpoint, or `tiny`"
    path = Path(name).expanduser()
    if path.is_dir():
        has_config = (path / "config.json").is_file()
        why = (
            next(iter(str(exc).strip().splitlines()), type(exc).__name__) if has_config else "no config.json"
        )
        return f"{name}: cannot load a model from this folder ({why}); give {hint}"
    if path.exists():
        return f"{name}: a file, not a model folder; give {hint}"
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return f"{name}: no such folder; give {hint}"
    return (
        f"cannot load model {name!r}: no such local folder, and not in the Hugging Face cache with the hub "
        f"unreachable (offline) or not on the hub; give a local folder path instead ({hint})"
    )


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' weight loading/writing progress bars and peft's deprecation warnings."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            # LoRA on a tied LM head adapts the output projection only; merge() unties first
            warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*", category=UserWarning)
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
