"""The partial file a pull writes a GGUF file's bytes into, beside where the file goes, until they are whole and
checked: its name, opening it without ever writing through a link, and what the server is told when it may not write
there."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from warpcore.server.core.errors import FailedPreconditionError


def partial_path(destination: Path, expected: str) -> Path:
    """Where the file's bytes go until they are whole: hidden beside it, named for the hash they must have. A file
    name too long to take the additions (an id may be 256 characters) gets a partial named for its hash instead."""
    name = f".{destination.name}.{expected[:16]}.part"
    if len(os.fsencode(name)) > os.pathconf(destination.parent, "PC_NAME_MAX"):
        name = f".{hashlib.sha256(os.fsencode(destination.name)).hexdigest()[:32]}.{expected[:16]}.part"
    return destination.with_name(name)


_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})
"""What the OS says when the server's user may not write where it asked: the folder's or the partial file's mode or
owner, a read-only mount, a file where a folder belongs."""


@contextlib.contextmanager
def writing_under(root: Path, model: str) -> Iterator[None]:
    """The OS refusing to let the server write under MODELS_PATH (`root`) for a pull of `model` (a folder to make,
    the partial file), as an error naming what stands in the way and what the operator can do."""
    try:
        yield
    except OSError as error:
        if error.errno not in _REFUSED or error.filename is None:
            raise
        path = Path(os.fsdecode(error.filename))
        raise FailedPreconditionError(_refusal(root, path, model, error), reason="MODEL_PATH_UNWRITABLE") from None


def _refusal(root: Path, path: Path, model: str, error: OSError) -> str:
    folder = path.parent.relative_to(root).as_posix()
    where = "MODELS_PATH" if folder == "." else f"the folder {folder} under MODELS_PATH"
    if error.errno == errno.ENOTDIR:  # a file where the pull's folder, or one above it, belongs
        file = next((above for above in path.parents if above.exists() and not above.is_dir()), path)
        return (
            f"this server cannot make the folder {path.relative_to(root).as_posix()} under MODELS_PATH to pull"
            f" {model!r}: {file.relative_to(root).as_posix()} is a file, not a folder; move it aside, or point"
            " MODELS_PATH elsewhere"
        )
    if path.exists() and os.access(path.parent, os.W_OK):  # the folder is writable: the file is another user's
        return (
            f"this server cannot write the partial file {path.name} in {where} to pull {model!r}"
            f" ({error.strerror}): remove it (the pull then starts over), or give the server's user write access to it"
        )
    return (
        f"this server cannot write in {where} to pull {model!r} ({error.strerror}): give the server's user write"
        " access to MODELS_PATH, or point MODELS_PATH at a folder it can write"
    )


def own_partial(partial: Path, root: Path, model: str) -> BinaryIO:
    """The partial file, open to read and append: a regular file, never followed through a link. A link under its
    name (which a pull would write through, out of MODELS_PATH perhaps, into a file of someone else's) is removed and
    the file made anew; anything else there is refused."""
    for _ in range(2):
        try:
            with writing_under(root, model):
                descriptor = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            if error.errno != errno.ELOOP or not partial.is_symlink():
                raise _unwritable(model) from None
            partial.unlink()
            continue
        file = os.fdopen(descriptor, "r+b")
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            return file
        file.close()
        break
    raise _unwritable(model)


def _unwritable(model: str) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"the partial file of model {model!r} under MODELS_PATH is not a regular file this server can write",
        reason="MODEL_PATH_UNREADABLE",
    )
