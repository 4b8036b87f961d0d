"""Map local model ids to GGUF files under MODELS_PATH, and never outside it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from warpcore.server.core.errors import FailedPreconditionError, NotFoundError, WarpcoreError
from warpcore.server.core.model_ids import HF_PREFIX, field_noun, model_id_for, relative_model_path

MMPROJ_FIELD = "settings.mmproj"
"""The setting that names a model's multimodal projector, a GGUF file under MODELS_PATH too."""


def models_root(models_path: str | None) -> Path:
    """The resolved MODELS_PATH folder, or an error saying how to set it."""
    if not models_path:
        raise FailedPreconditionError(
            "MODELS_PATH is not set on the server; set it to the folder that holds your GGUF models",
            reason="MODELS_PATH_UNSET",
        )
    root = Path(models_path).resolve()
    if not root.is_dir():
        raise FailedPreconditionError("MODELS_PATH does not name an existing folder", reason="MODELS_PATH_MISSING")
    return root


def _unreadable(relative: PurePosixPath, field: str) -> NotFoundError:
    return NotFoundError(
        f"{field_noun(field)} file {relative} cannot be read under MODELS_PATH",
        reason="MODEL_FILE_NOT_FOUND",
        field=field,
    )


def _located(model: str, models_path: str | None, field: str) -> tuple[PurePosixPath, Path]:
    """The path a model id names under MODELS_PATH, and where it leads once links are followed: inside MODELS_PATH,
    though perhaps to nothing."""
    relative = relative_model_path(model, field)
    root = models_root(models_path)
    try:
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError):  # a symlink loop, or a name the filesystem refuses
        raise _unreadable(relative, field) from None
    if not resolved.is_relative_to(root):
        raise FailedPreconditionError(
            f"{field_noun(field)} {model!r} is a link to a file outside MODELS_PATH, which is not served",
            reason="MODEL_PATH_OUTSIDE_MODELS_PATH",
            # The id is well formed, and what the link points at is the server's state: FAILED_PRECONDITION, as for a
            # file the server may not read; the field is named as for every other refusal of the path.
            field=field,
        )
    return relative, resolved


def _exists(relative: PurePosixPath, resolved: Path, field: str) -> bool:
    try:
        return resolved.exists()
    except OSError:  # a folder on the way that the server may not search, or a name the filesystem refuses
        raise _unreadable(relative, field) from None


def resolve_model_path(model: str, models_path: str | None, field: str = "model") -> Path:
    """The real GGUF file for a model id (or the file `field` names), after following symlinks, inside MODELS_PATH:
    a regular file the server may read."""
    relative, resolved = _located(model, models_path, field)
    if not _exists(relative, resolved, field):
        # Never pulled by LoadModel itself: a download of gigabytes does not fit a unary call and its deadline.
        how = (
            f"; pull it first (`warpcore pull {model}`, if the server allows pulls)"
            if model.startswith(HF_PREFIX)
            else ""
        )
        raise NotFoundError(
            f"{field_noun(field)} file {relative} was not found under MODELS_PATH{how}",
            reason="MODEL_FILE_NOT_FOUND",
            field=field,
        )
    if not (resolved.is_file() and os.access(resolved, os.R_OK)):  # a folder, a device, or another user's file
        raise _unreadable(relative, field)
    return resolved


def check_model_file(model: str, models_path: str | None, field: str = "model", *, pulls: bool) -> bool:
    """What loading the file would refuse of it, checked without loading it (for a model loaded later): True when it
    is there to load; False for an hf: file not there yet while the server pulls (`pulls`), since a PullModel can
    bring it before it is first used."""
    if pulls and model.startswith(HF_PREFIX) and not _exists(*_located(model, models_path, field), field):
        return False
    resolve_model_path(model, models_path, field)
    return True


def list_model_ids(models_path: str | None) -> list[str]:
    """Ids of every GGUF file under MODELS_PATH that LoadModel would take (blocking: walks the folder)."""
    root = models_root(models_path)
    ids = []
    for path in sorted(root.rglob("*.gguf")):
        model_id = model_id_for(PurePosixPath(path.relative_to(root).as_posix()))
        try:
            resolve_model_path(model_id, models_path)
        except WarpcoreError:  # a link out of MODELS_PATH, a loop, a folder, a name no request may give
            continue
        if _is_gguf(path):
            ids.append(model_id)
    return ids


def _is_gguf(path: Path) -> bool:
    """Whether the file begins as every GGUF file does: a file named so that is none would fail its load."""
    try:
        with path.open("rb") as file:
            return file.read(4) == b"GGUF"
    except OSError:
        return False
