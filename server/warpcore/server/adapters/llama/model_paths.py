"""Map local model ids to GGUF files under MODELS_PATH, and never outside it."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from warpcore.server.core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError

HF_PREFIX = "hf:"
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_BYTES = 255  # per path segment, as on common filesystems


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


def _malformed(model: str, expected: str, field: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{_noun(field)} {model!r} {expected}", field=field, reason="MODEL_ID_MALFORMED")


def _noun(field: str) -> str:
    """What a refusal calls the file: "model", or the setting that names it (e.g. "mmproj")."""
    return field.rpartition(".")[2]


def relative_model_path(model: str, field: str = "model") -> PurePosixPath:
    """The path under MODELS_PATH that a model id (or another GGUF file's id, named by `field`) names, checked for
    shape only."""
    if not model or "\x00" in model:
        raise InvalidArgumentError(f"{_noun(field)} must be a non-empty path or hf:owner/repo:file.gguf", field=field)
    if "\\" in model:
        raise _malformed(model, "holds a backslash: separate folders with '/' (a path relative to MODELS_PATH)", field)
    if model.startswith(HF_PREFIX):
        repo, _, filename = model[len(HF_PREFIX) :].partition(":")
        parts = repo.split("/")
        if len(parts) != 2 or not all(_REPO_PART.fullmatch(part) for part in parts) or not filename:
            raise _malformed(model, "is not of the form hf:owner/repo:file.gguf", field)
        relative = PurePosixPath("hf", parts[0], parts[1], filename)
    else:
        relative = PurePosixPath(model)
    if relative.is_absolute() or ".." in relative.parts:
        raise InvalidArgumentError(
            f"{_noun(field)} {model!r} must stay inside MODELS_PATH: give a path relative to it, without '..'",
            field=field,
            reason="MODEL_PATH_OUTSIDE_MODELS_PATH",
        )
    if relative.suffix != ".gguf":
        raise _malformed(model, "must name a .gguf file", field)
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in relative.parts):
        raise _malformed(model, f"has a path segment longer than {MAX_NAME_BYTES} bytes", field)
    return relative


def resolve_model_path(model: str, models_path: str | None, field: str = "model") -> Path:
    """The real GGUF file for a model id (or the file `field` names), after following symlinks, inside MODELS_PATH."""
    relative = relative_model_path(model, field)
    root = models_root(models_path)
    try:
        resolved = (root / relative).resolve()
        is_file = resolved.is_file()
    except (OSError, RuntimeError):  # a symlink loop, or a name the filesystem refuses
        raise NotFoundError(
            f"{_noun(field)} file {relative} cannot be read under MODELS_PATH",
            reason="MODEL_FILE_NOT_FOUND",
            field=field,
        ) from None
    if not resolved.is_relative_to(root):
        raise FailedPreconditionError(
            f"{_noun(field)} {model!r} is a link to a file outside MODELS_PATH, which is not served",
            reason="MODEL_PATH_OUTSIDE_MODELS_PATH",
        )
    if not is_file:
        # Never pulled by LoadModel itself: a download of gigabytes does not fit a unary call and its deadline.
        how = (
            f"; pull it first (`warpcore pull {model}`, if the server allows pulls)"
            if model.startswith(HF_PREFIX)
            else ""
        )
        raise NotFoundError(
            f"{_noun(field)} file {relative} was not found under MODELS_PATH{how}",
            reason="MODEL_FILE_NOT_FOUND",
            field=field,
        )
    return resolved


def model_id_for(relative: PurePosixPath) -> str:
    """The id that names a file under MODELS_PATH: the hf: form where the path fits it."""
    parts = relative.parts
    if len(parts) >= 4 and parts[0] == "hf" and all(_REPO_PART.fullmatch(part) for part in parts[1:3]):
        return f"{HF_PREFIX}{parts[1]}/{parts[2]}:{'/'.join(parts[3:])}"
    return relative.as_posix()


def list_model_ids(models_path: str | None) -> list[str]:
    """Ids of every GGUF file under MODELS_PATH that resolves inside it (blocking: walks the folder)."""
    root = models_root(models_path)
    ids = []
    for path in sorted(root.rglob("*.gguf")):
        try:
            servable = path.resolve().is_relative_to(root) and path.is_file()
        except (OSError, RuntimeError):
            continue
        if servable:
            ids.append(model_id_for(PurePosixPath(path.relative_to(root).as_posix())))
    return ids
