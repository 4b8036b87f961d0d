"""Map local model ids to GGUF files under MODELS_PATH, and never outside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from types import TracebackType

from warpcore.server.core.domain import LoadSpec
from warpcore.server.core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError, WarpcoreError
from warpcore.server.core.model_ids import HF_PREFIX, field_noun, file_id, model_id_for, relative_model_path

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


def _located(model: str, models_path: str | None, field: str) -> tuple[PurePosixPath, Path, Path]:
    """The path a model id names under MODELS_PATH, the resolved MODELS_PATH, and where the path leads once links are
    followed: inside MODELS_PATH, though perhaps to nothing."""
    relative = relative_model_path(model, field)
    root = models_root(models_path)
    try:
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError):  # a symlink loop, or a name the filesystem refuses
        raise _unreadable(relative, field) from None
    _inside(resolved, root, model, field)
    return relative, root, resolved


def _inside(resolved: Path, root: Path, model: str, field: str) -> None:
    if not resolved.is_relative_to(root):
        raise FailedPreconditionError(
            f"{field_noun(field)} {model!r} is a link to a file outside MODELS_PATH, which is not served",
            reason="MODEL_PATH_OUTSIDE_MODELS_PATH",
            # The id is well formed, and what the link points at is the server's state: FAILED_PRECONDITION, as for a
            # file the server may not read; the field is named as for every other refusal of the path.
            field=field,
        )


def _exists(relative: PurePosixPath, resolved: Path, field: str) -> bool:
    try:
        return resolved.exists()
    except OSError:  # a folder on the way that the server may not search, or a name the filesystem refuses
        raise _unreadable(relative, field) from None


def _checked(model: str, models_path: str | None, field: str) -> tuple[PurePosixPath, Path, Path]:
    """`_located`'s path, root and real file, after following symlinks, inside MODELS_PATH: a regular file the server
    may read (at the time of the check: a reader opens it with `open_model_file`)."""
    relative, root, resolved = _located(model, models_path, field)
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
    return relative, root, resolved


class ModelFile:
    """A model's GGUF file, held open from the check of its path on: `path` names this very file for as long as it
    stays open, whatever becomes of its name meanwhile. llama.cpp opens files by name, and a name checked a moment
    before may lead out of MODELS_PATH by then (a symlink put in its place): given `path`, it reads the file that was
    checked. Close it once every reader has opened the file (a mapping of it outlives the close)."""

    def __init__(self, descriptor: int, path: Path, name: str) -> None:
        self._descriptor = descriptor
        self.path = path
        self.name = name
        """The id it was opened by, for messages: `path` means nothing to a caller."""

    def stat(self) -> os.stat_result:
        return os.fstat(self._descriptor)

    def begins_as_gguf(self) -> bool:
        """Whether the file begins as every GGUF file does: a file named so that is none would fail its load."""
        try:
            return os.pread(self._descriptor, 4, 0) == b"GGUF"
        except OSError:
            return False

    def close(self) -> None:
        os.close(self._descriptor)

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def open_model_file(model: str, models_path: str | None, field: str = "model") -> ModelFile:
    """The GGUF file for a model id (or the file `field` names), inside MODELS_PATH once symlinks are followed, a
    regular file the server may read, and open: where the open descriptor leads is checked again, so that a link put
    in the name's place after the first check is refused rather than followed."""
    relative, root, resolved = _checked(model, models_path, field)
    try:
        # Not following a link the resolved name has become; without blocking on a FIFO put in its place.
        descriptor = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise _unreadable(relative, field) from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _unreadable(relative, field)
        opened = Path(f"/proc/self/fd/{descriptor}")
        try:
            target = Path(os.readlink(opened))
        except OSError:
            # No /proc (macOS, the BSDs): llama.cpp gets the real path checked above. A name on that path replaced
            # between this check and llama.cpp's own open of it is then followed: a narrower race than that of a
            # name resolved once and opened by llama.cpp later, but still one.
            target = opened = resolved
        # A folder on the way may have become a link since the check: where the descriptor leads is what counts.
        _inside(target, root, model, field)
        return ModelFile(descriptor, opened, model)
    except BaseException:
        os.close(descriptor)
        raise


def check_model_file(model: str, models_path: str | None, field: str = "model", *, pulls: bool) -> bool:
    """What loading the file would refuse of it, checked without loading it (for a model loaded later): True when it
    is there to load; False for an hf: file not there yet while the server pulls (`pulls`), since a PullModel can
    bring it before it is first used."""
    if pulls and model.startswith(HF_PREFIX):
        relative, _, resolved = _located(model, models_path, field)
        if not _exists(relative, resolved, field):
            return False
    _checked(model, models_path, field)
    return True


def list_model_ids(models_path: str | None) -> list[str]:
    """Ids of every GGUF file under MODELS_PATH that LoadModel would take (blocking: walks the folder)."""
    root = models_root(models_path)
    ids = [model_id_for(PurePosixPath(path.relative_to(root).as_posix())) for path in sorted(root.rglob("*.gguf"))]
    return [model_id for model_id in ids if is_model_file(model_id, models_path)]


def is_model_file(model_id: str, models_path: str | None) -> bool:
    """Whether `model_id` names a GGUF file under MODELS_PATH that LoadModel would take (blocking: opens it); never
    one a link leads to out of MODELS_PATH."""
    try:
        with open_model_file(model_id, models_path) as file:
            return file.begins_as_gguf()
    except WarpcoreError:  # no such file, a link out of MODELS_PATH, a loop, a folder, MODELS_PATH unset
        return False


def check_hides_no_file(spec: LoadSpec, models_path: str | None) -> None:
    """A hosted model keeps its own name as its id though it is spelled as a GGUF file's (validation.py: a compatible
    server may name a model `x.gguf`), unless that file is under MODELS_PATH as it loads (blocking: opens it): under
    the file's id it would hide the file (its LoadModel ALREADY_EXISTS) and answer calls meant for it. Validation
    reads spellings only; this reads the disk, where a load is asked for (Engine.load) or the start declares a lazy
    model."""
    named = file_id(spec.model_id) if spec.backend.hosted else None
    if named is not None and is_model_file(named, models_path):
        raise InvalidArgumentError(
            f"the hosted model {spec.name!r} would take the id {named!r}, the name of a model file under MODELS_PATH,"
            " which it would hide: give the hosted model a model_id of its own",
            field="model_id",
            reason="MODEL_ID_NAMES_ANOTHER_FILE",
        )
