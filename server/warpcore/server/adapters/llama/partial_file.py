"""The partial file a pull writes a GGUF file's bytes into, beside where the file goes, until they are whole and
checked: its name, and opening it without ever writing through a link."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
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


def own_partial(partial: Path, model: str) -> BinaryIO:
    """The partial file, open to read and append: a regular file, never followed through a link. A link under its
    name (which a pull would write through, out of MODELS_PATH perhaps, into a file of someone else's) is removed and
    the file made anew; anything else there is refused."""
    for _ in range(2):
        try:
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
