"""Pull a GGUF file from the Hugging Face Hub (or a mirror at HF_ENDPOINT) into exactly the path its hf: id
resolves to under MODELS_PATH, through huggingface_hub's own metadata and download calls. The bytes go to a partial
file beside it, hashed as they arrive; the file takes its name only once complete and equal to the hub's SHA-256,
and a pull cut short resumes from the partial file. Blocking: run it on a thread."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers, disable_progress_bars  # type: ignore[attr-defined]

from warpcore.server.adapters.env import env_url
from warpcore.server.adapters.llama.model_paths import models_root, open_model_file
from warpcore.server.adapters.llama.partial_file import own_partial, partial_path, writing_under
from warpcore.server.adapters.redaction import redact
from warpcore.server.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
    WarpcoreError,
)
from warpcore.server.core.model_ids import HF_PREFIX, relative_model_path
from warpcore.server.core.pulls import PulledFile, PullProgressCallback, PullStoppedError

_log = logging.getLogger(__name__)
DEFAULT_ENDPOINT = "https://huggingface.co"
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CAUSE_CHARS = 300
"""The most of an underlying error's words a caller is told: its first line, which names the cause (a library's
message may go on with a response body)."""

disable_progress_bars()  # a server has no terminal: progress goes to the caller instead
# The library hands on the body in pieces of this size (10 MiB), holding back what came until one is full: on a slow
# link progress stood still for seconds, and a pull that failed lost what it held, the partial file missing bytes that
# had arrived. None (httpx's own default) hands on each read as it comes.
constants.DOWNLOAD_CHUNK_SIZE = None  # type: ignore[assignment]


class _HashingWriter:
    """The partial file, hashing and counting what is written, stopping the download once `stop` is set."""

    def __init__(
        self, file: BinaryIO, done: int, total: int | None, progress: PullProgressCallback, stop: threading.Event
    ) -> None:
        self.hash = hashlib.sha256()
        file.seek(0)
        while chunk := file.read(1 << 20):  # what an earlier pull wrote; the download appends after it
            self.hash.update(chunk)
        self._file = file
        self.done, self._total, self._progress, self._stop = done, total, progress, stop

    def write(self, chunk: bytes) -> int:
        if self._stop.is_set():
            raise PullStoppedError
        written = self._file.write(chunk)
        self.hash.update(chunk)
        self.done += len(chunk)
        self._progress(self.done, self._total)
        return written

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # The server ignored the Range asked for and sends the whole file: start the hash over.
        self.hash, self.done = hashlib.sha256(), offset
        return self._file.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        return self._file.truncate(size)


def pull_file(
    model: str, revision: str | None, env: Mapping[str, str], progress: PullProgressCallback, stop: threading.Event
) -> PulledFile:
    """Download `model` ("hf:owner/repo:file.gguf") unless its file is already there: with no `revision`, as it
    stands; with one, only if it is that revision's, by the hub's SHA-256 (else that revision's file replaces it)."""
    if not model.startswith(HF_PREFIX):
        raise InvalidArgumentError(
            "only hf:owner/repo:file.gguf models can be pulled", field="model", reason="MODEL_ID_MALFORMED"
        )
    relative = relative_model_path(model)
    root = models_root(env.get("MODELS_PATH"))
    destination = root / relative
    present = destination.exists()
    if present:
        # Checked as LoadModel checks it: a link out of MODELS_PATH is refused, and says nothing of its target.
        with open_model_file(model, env.get("MODELS_PATH")) as file:
            size = file.stat().st_size
        if revision is None:
            progress(size, size)
            return PulledFile(model, size, sha256=None, already_present=True)
    try:
        folder = destination.parent.resolve()
    except (OSError, RuntimeError):  # a symlink loop, or a name the filesystem refuses
        raise FailedPreconditionError(
            f"the folder of model {model!r} cannot be read under MODELS_PATH", reason="MODEL_PATH_UNREADABLE"
        ) from None
    if not folder.is_relative_to(root):
        raise FailedPreconditionError(
            f"model {model!r} would be written through a link to a folder outside MODELS_PATH, which is not served",
            reason="MODEL_PATH_OUTSIDE_MODELS_PATH",
        )
    _, owner, repo, *file_parts = relative.parts
    endpoint = (env_url(env, "HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    asked = _Asked(model, f"{owner}/{repo}", "/".join(file_parts), env.get("HF_TOKEN", ""), endpoint)
    token = asked.token or False  # False: never a token from this process's own files or environment
    url = hf_hub_url(asked.repo_id, asked.filename, revision=revision, endpoint=endpoint)
    # Retries: huggingface_hub's documented bound is get_hf_file_metadata's `retry_on_errors` (on: five retries of
    # 1 to 8 s on 429, 5xx and network errors, 23 s before a hub that cannot be reached is reported; off: none), with
    # `timeout` (HF_HUB_ETAG_TIMEOUT, 10 s) bounding each attempt; the number of retries is not a parameter. It is
    # off: the caller hears at once why the hub cannot be reached, and retries the pull, which resumes. The download
    # itself (http_get) still resumes a cut connection on its own.
    with _hub_errors(asked):
        metadata = get_hf_file_metadata(url, token=token, endpoint=endpoint, retry_on_errors=False)
    expected = (metadata.etag or "").lower()
    if not _SHA256.fullmatch(expected):
        raise FailedPreconditionError(
            f"the hub gives no SHA-256 for {model!r} (it is not stored with Git LFS), so it cannot be checked",
            reason="PULL_NOT_VERIFIABLE",
        )
    if present and _sha256_of(destination, stop) == expected:
        progress(size, size)
        return PulledFile(model, size, sha256=expected, already_present=True)
    made = [folder for folder in (destination.parent, *destination.parent.parents) if not folder.exists()]
    try:
        with writing_under(root, model):
            destination.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(destination, expected)
        with own_partial(partial, root, model) as file:
            done = os.fstat(file.fileno()).st_size
            total = metadata.size
            if total is not None and done > total:
                # More bytes than the file has (kept by an older server): no range of the file starts past its end,
                # so the hub would answer every resumed pull 416. A partial file of exactly the size is hashed, as it
                # stands.
                file.truncate(0)
                done = 0
            progress(done, total)  # the size, as soon as the hub said it, before the first piece arrives
            if total is not None and shutil.disk_usage(partial.parent).free < total - done:
                if not done:
                    partial.unlink()  # made just now, for nothing
                raise _disk_full(model, total - done)
            writer = _HashingWriter(file, done, total, progress, stop)
            try:
                with _hub_errors(asked):
                    headers = build_hf_headers(token=token)
                    if not _same_origin(metadata.location, url):
                        headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub
                    http_get(metadata.location, writer, resume_size=done, headers=headers, expected_size=total)  # type: ignore[arg-type]
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    raise _disk_full(model, (total or 0) - writer.done) from None
                if error.errno is None and total is not None and writer.done != total:
                    # huggingface_hub's "Consistency check failed": resumed, these bytes would fail every pull
                    # alike.
                    what = f"came to {writer.done} bytes where the hub announced {total}"
                    raise _discarded(partial, model, what, "PULL_SIZE_MISMATCH") from None
                raise
        digest = writer.hash.hexdigest()
        if digest != expected:
            mismatch = f"does not match the hub's SHA-256 ({expected}, got {digest})"
            raise _discarded(partial, model, mismatch, "PULL_HASH_MISMATCH")
    except BaseException:
        for folder in made:  # deepest first: the folders this pull made, unless a partial file stays in them
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    partial.replace(destination)
    _log.info("pulled %s (%d bytes, sha256 %s)", model, writer.done, digest)
    return PulledFile(model, writer.done, sha256=digest, already_present=False)


def _sha256_of(path: Path, stop: threading.Event) -> str:
    """The file's SHA-256, read a MiB at a time; stopped as a download is, once no caller waits."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            if stop.is_set():
                raise PullStoppedError
            digest.update(chunk)
    return digest.hexdigest()


def _discarded(partial: Path, model: str, what: str, reason: str) -> UnavailableError:
    """The download is no copy of the file the hub describes: gone, so that the next pull starts over."""
    partial.unlink(missing_ok=True)
    return UnavailableError(f"the download of {model!r} {what}; it was discarded: pull again", reason=reason)


def _disk_full(model: str, needed: int) -> ResourceExhaustedError:
    return ResourceExhaustedError(
        f"not enough disk space under MODELS_PATH to pull {model!r} ({needed} more bytes needed)", reason="DISK_FULL"
    )


@dataclass(frozen=True)
class _Asked:
    """What a pull asks of the hub, as its refusals name it."""

    model: str
    repo_id: str
    filename: str
    token: str
    """The server's HF_TOKEN; empty: none is sent."""
    endpoint: str


# huggingface_hub's exceptions, most specific first (a gated repository is a kind of missing one to the library).
_HUB_ERRORS: tuple[tuple[type[Exception], type[WarpcoreError], str, str], ...] = (
    (
        GatedRepoError,
        PermissionDeniedError,
        "{model!r} is in a gated repository: accept its terms on the hub and set HF_TOKEN on the server",
        "HUB_REPO_GATED",
    ),
    (RevisionNotFoundError, NotFoundError, "the hub has no such revision for {model!r}", "HUB_REVISION_NOT_FOUND"),
    (
        RepositoryNotFoundError,
        NotFoundError,
        "the hub has no repository for {model!r} (or it is private: set HF_TOKEN on the server)",
        "HUB_REPO_NOT_FOUND",
    ),
    (EntryNotFoundError, NotFoundError, "the hub repository {repo_id} has no file {filename}", "HUB_FILE_NOT_FOUND"),
)


@contextlib.contextmanager
def _hub_errors(asked: _Asked) -> Iterator[None]:
    """huggingface_hub's exceptions as domain errors, each saying what to do; one that is not the hub's answer
    also says the underlying cause in its own words (the server's token scrubbed)."""
    model = asked.model
    try:
        yield
    except (HfHubHTTPError, httpx2.HTTPError, EntryNotFoundError) as error:
        for kind, domain_error, message, reason in _HUB_ERRORS:
            if isinstance(error, kind):
                words = message.format(model=model, repo_id=asked.repo_id, filename=asked.filename)
                raise domain_error(words, reason=reason) from None
        response = getattr(error, "response", None)
        status = None if response is None else response.status_code
        if status == 404:
            raise NotFoundError(
                f"the hub has nothing at the address of {model!r}", reason="HUB_FILE_NOT_FOUND"
            ) from None
        if response is not None and status in (401, 403) and _same_origin(str(response.url), asked.endpoint):
            # The hub refuses the server (a mirror its token, say), not with its answer of a missing or gated
            # repository; a retry gets the same. A signed CDN address refused is no such answer: it is asked anew.
            refused = "the server's HF_TOKEN" if asked.token else "a server without HF_TOKEN"
            raise PermissionDeniedError(
                f"the hub refused {model!r} to {refused} (HTTP {status}): set an HF_TOKEN allowed to read"
                f" {asked.repo_id} on the server",
                reason="HUB_UNAUTHORIZED",
            ) from None
        raise UnavailableError(
            f"the hub could not be reached for {model!r}: {_cause(error, asked.token)}; retry (a retried pull resumes)",
            reason="HUB_UNAVAILABLE",
        ) from None


def _same_origin(url: str, other: str) -> bool:
    return urlsplit(url)[:2] == urlsplit(other)[:2]


def _cause(error: Exception, token: str) -> str:
    """The error's kind and the first line of its words ("ConnectError: [Errno -2] Name or service not known"),
    bounded, without the server's `token` (HF_ENDPOINT holds no password: env_url refuses one)."""
    words = redact(next(iter(str(error).splitlines()), "").strip()[:MAX_CAUSE_CHARS], token)
    return f"{type(error).__name__}: {words}" if words else type(error).__name__
