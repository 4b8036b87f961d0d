"""How a GGUF file under MODELS_PATH is named (hf:owner/repo:file.gguf, or a path relative to MODELS_PATH), checked
for shape only, and the one spelling of each name. Where a name leads on disk is adapters/llama/model_paths.py's."""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePosixPath

from warpcore.server.core.errors import InvalidArgumentError

HF_PREFIX = "hf:"
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_BYTES = 255  # per path segment, as on common filesystems


def _malformed(model: str, expected: str, field: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{field_noun(field)} {model!r} {expected}", field=field, reason="MODEL_ID_MALFORMED")


def _repo_refusal(owner: str, repo: str) -> str | None:
    """Why owner/repo can name no repository on the hub (None: it can): not our shape, or against the hub's own
    rules, which huggingface_hub checks (no "--" or "..", no "." or ".git" at the end, at most 96 characters). Read
    with the id, so that LoadModel, PullModel and the preload file refuse it alike, before any request to the hub."""
    if not (_REPO_PART.fullmatch(owner) and _REPO_PART.fullmatch(repo)):
        return "is not of the form hf:owner/repo:file.gguf"
    # Imported by the first hf: id, not at start: a server that never names one never needs huggingface_hub.
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

    try:
        validate_repo_id(f"{owner}/{repo}")
    except HFValidationError as error:
        words = str(error)
        rule = words.rpartition(": '")[0] or words  # without the id it quotes, which the caller has
        return f"names a repository the hub cannot have ({rule})"
    return None


def field_noun(field: str) -> str:
    """What a refusal calls the file: "model", or the setting that names it (e.g. "mmproj")."""
    return field.rpartition(".")[2]


def relative_model_path(model: str, field: str = "model") -> PurePosixPath:
    """The path under MODELS_PATH that a model id (or another GGUF file's id, named by `field`) names, checked for
    shape only."""
    if not model or "\x00" in model:
        raise InvalidArgumentError(
            f"{field_noun(field)} must be a non-empty path or hf:owner/repo:file.gguf", field=field
        )
    if "\\" in model:
        raise _malformed(model, "holds a backslash: separate folders with '/' (a path relative to MODELS_PATH)", field)
    if model.startswith(HF_PREFIX):
        repo, _, filename = model[len(HF_PREFIX) :].partition(":")
        parts = repo.split("/")
        if len(parts) != 2 or not filename:
            raise _malformed(model, "is not of the form hf:owner/repo:file.gguf", field)
        refusal = _repo_refusal(*parts)
        if refusal is not None:
            raise _malformed(model, refusal, field)
        relative = PurePosixPath("hf", parts[0], parts[1], filename)
    else:
        relative = PurePosixPath(model)
    if relative.is_absolute() or ".." in relative.parts:
        folded = None if relative.is_absolute() else _folded(relative)
        hint = f" (here {folded!r}, unless a folder on the way is a link)" if folded else ""
        how = "not an absolute one" if relative.is_absolute() else "without '..'"
        raise InvalidArgumentError(
            f"{field_noun(field)} {model!r} must stay inside MODELS_PATH: give a path relative to it, {how}{hint}",
            field=field,
            reason="MODEL_PATH_OUTSIDE_MODELS_PATH",
        )
    if relative.suffix != ".gguf":
        raise _malformed(model, "must name a .gguf file", field)
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in relative.parts):
        raise _malformed(model, f"has a path segment longer than {MAX_NAME_BYTES} bytes", field)
    return relative


def _folded(relative: PurePosixPath) -> str | None:
    """The id a path through '..' would name were no folder on its way a link, if it names a file under
    MODELS_PATH: a suggestion only, since `a/..` leaves `a` wherever a link `a` leads."""
    folded = posixpath.normpath(relative)
    if folded == ".." or folded.startswith("../"):  # above MODELS_PATH even so
        return None
    try:
        return model_id_for(relative_model_path(folded))
    except InvalidArgumentError:
        return None


def model_id_for(relative: PurePosixPath) -> str:
    """The id that names a file under MODELS_PATH: the hf: form where the path fits it."""
    parts = relative.parts
    if len(parts) >= 4 and parts[0] == "hf" and _repo_refusal(parts[1], parts[2]) is None:
        return f"{HF_PREFIX}{parts[1]}/{parts[2]}:{'/'.join(parts[3:])}"
    return relative.as_posix()


def file_id(model: str) -> str | None:
    """The id of the GGUF file under MODELS_PATH that `model` is spelled as the name of, in its one spelling, whether
    or not the file exists; None for a name of no GGUF file (a hosted model, an id of the caller's choosing, or one
    LoadModel refuses)."""
    if ".gguf" not in model:  # most ids, hosted models' among them, on every call: no path to build
        return None
    try:
        return model_id_for(relative_model_path(model))
    except InvalidArgumentError:
        return None


def canonical_model_id(model: str) -> str:
    """The one spelling of a name of a GGUF file: `./x.gguf`, `x.gguf/` and `a//x.gguf` are `x.gguf` and `a/x.gguf`,
    `hf/owner/repo/f.gguf` is `hf:owner/repo:f.gguf`. Only the spelling, never the disk: a link stays a name of its
    own (it may be an alias the operator made on purpose), and `..` stays refused rather than folded away (`a/..`
    leaves `a` wherever a link `a` leads). A name of no GGUF file is its own spelling."""
    return file_id(model) or model
