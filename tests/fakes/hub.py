"""A Hugging Face Hub on loopback, speaking the resolve protocol as huggingface_hub uses it: `HEAD
/{owner}/{repo}/resolve/{revision}/{file}` answers with the file's metadata (X-Repo-Commit, X-Linked-Etag with
the SHA-256, X-Linked-Size, the pointer's ETag) and a redirect to a "CDN" on another origin (so that the client
stops there, as it does for the real hub's CDN); `GET` on the CDN serves the bytes, with Range requests (416 for a
range that starts at or after the end). Errors
carry X-Error-Code as the hub sends it (RepoNotFound, RevisionNotFound, EntryNotFound)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web

_HOST = "127.0.0.1"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PIECE = 64 * 1024  # bytes the CDN sends at a time


@dataclass
class HubFile:
    content: bytes
    sha256: str = ""
    """What the hub says the SHA-256 is; empty: the content's own."""

    def __post_init__(self) -> None:
        self.sha256 = self.sha256 or hashlib.sha256(self.content).hexdigest()


@dataclass
class Download:
    """One GET the CDN served: its Range and Authorization headers, and the bytes sent before it ended."""

    range: str | None
    authorization: str | None
    sent: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class FakeHub:
    """Tests put files in `files` ("owner/repo/revision/file" -> HubFile), and may set `cut_after` (the next GET
    drops its connection after that many bytes), `hold_after` with `release` (the GETs stop after that many bytes
    until `release` is set), `pace` (a slow link: the GETs send only the bytes put in it, a count at a time, and close
    their connection at a None), `unavailable_after` (the GETs after that many are answered 503, a CDN gone down),
    `size_override` (the size the metadata claims), `refusal` (a status every metadata request gets, bare: no
    X-Error-Code, as from a mirror refusing the server's token); they read `heads` and `downloads`."""

    def __init__(self) -> None:
        self.files: dict[str, HubFile] = {}
        self.heads: list[str] = []
        self.downloads: list[Download] = []
        self.cut_after: int | None = None
        self.hold_after: int | None = None
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self.pace: asyncio.Queue[int | None] | None = None
        self.unavailable_after: int | None = None
        self.size_override: int | None = None
        self.refusal: int | None = None
        self.gated: dict[str, str] = {}
        """Repositories ("owner/repo") that answer only requests bearing this token."""
        self._runner: web.AppRunner | None = None
        self.endpoint = ""
        self._cdn = ""

    def add(self, repo: str, filename: str, content: bytes, revision: str = "main", sha256: str = "") -> HubFile:
        hub_file = HubFile(content, sha256)
        self.files[f"{repo}/{revision}/{filename}"] = hub_file
        return hub_file

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("HEAD", "/{owner}/{repo}/resolve/{revision}/{filename:.+}", self._resolve)
        app.router.add_route("GET", "/cdn/{sha256}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        ports = []
        for _ in range(2):  # the hub, and the CDN on another origin
            site = web.TCPSite(self._runner, _HOST, 0)
            await site.start()
            ports.append(int(self._runner.addresses[-1][1]))
        self.endpoint, self._cdn = (f"http://{_HOST}:{port}" for port in ports)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: TracebackType | None
    ) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _resolve(self, request: web.Request) -> web.Response:
        owner, repo, revision, filename = (request.match_info[key] for key in ("owner", "repo", "revision", "filename"))
        self.heads.append(request.path)
        if self.refusal is not None:
            return web.Response(status=self.refusal, text="Unauthorized")
        if not any(key.startswith(f"{owner}/{repo}/") for key in self.files):
            return web.Response(status=401, headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "no repo"})
        token = self.gated.get(f"{owner}/{repo}")
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=403, headers={"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
        if not any(key.startswith(f"{owner}/{repo}/{revision}/") for key in self.files):
            return web.Response(status=404, headers={"X-Error-Code": "RevisionNotFound"})
        hub_file = self.files.get(f"{owner}/{repo}/{revision}/{filename}")
        if hub_file is None:
            return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"})
        size = self.size_override if self.size_override is not None else len(hub_file.content)
        return web.Response(
            status=302,
            headers={
                "Location": f"{self._cdn}/cdn/{hub_file.sha256}",
                "X-Repo-Commit": COMMIT,
                "X-Linked-Etag": f'"{hub_file.sha256}"',
                "X-Linked-Size": str(size),
                "ETag": '"pointer-git-sha1"',
            },
        )

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        hub_file = next(f for f in self.files.values() if f.sha256 == request.match_info["sha256"])
        content = hub_file.content
        download = Download(request.headers.get("Range"), request.headers.get("Authorization"))
        self.downloads.append(download)
        if self.unavailable_after is not None and len(self.downloads) > self.unavailable_after:
            download.finished.set()
            return web.Response(status=503, text="Service Unavailable")
        start = int(download.range.removeprefix("bytes=").split("-")[0]) if download.range else 0
        if start >= len(content) > 0:  # as the hub's CDN: no byte of the file is at or after its end
            download.finished.set()
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(content)}"})
        response = web.StreamResponse(status=206 if start else 200)
        response.content_length = len(content) - start
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        await response.prepare(request)
        cut_after, self.cut_after = self.cut_after, None
        try:
            if self.pace is not None:
                await self._paced(request, response, content[start:], self.pace, download)
                return response
            for offset in range(start, len(content), PIECE):
                if cut_after is not None and download.sent >= cut_after:
                    assert request.transport is not None
                    request.transport.abort()  # the connection drops in the middle of the body
                    return response
                if self.hold_after is not None and offset >= self.hold_after:
                    self.held.set()
                    await self.release.wait()
                piece = content[offset : offset + PIECE]
                await response.write(piece)
                download.sent += len(piece)
            await response.write_eof()
            return response
        finally:
            download.finished.set()

    @staticmethod
    async def _paced(
        request: web.Request,
        response: web.StreamResponse,
        content: bytes,
        pace: asyncio.Queue[int | None],
        download: Download,
    ) -> None:
        while download.sent < len(content):
            allowed = await pace.get()
            if allowed is None:
                assert request.transport is not None
                request.transport.close()  # the link drops: what was sent arrives, then the connection closes
                return
            piece = content[download.sent : download.sent + allowed]
            await response.write(piece)
            download.sent += len(piece)
        await response.write_eof()
