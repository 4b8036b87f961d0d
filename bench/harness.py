"""What every benchmark shares: the result file contract, contender processes on free loopback ports, readiness,
and the CPU time and memory of a process with its children."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

Cell = str | int | float
PR_SET_PDEATHSIG = 1  # prctl(2)
# A process that is not up by then is broken, not slow: even a busy 2-core machine loads Gemma in seconds.
READY_TIMEOUT = 120.0
# gRPC waits a second before its first reconnect by default, which would hide the moment a server comes up.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 5),
    ("grpc.min_reconnect_backoff_ms", 5),
    ("grpc.max_reconnect_backoff_ms", 20),
)


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[Cell]]


@dataclass
class Target:
    name: str
    value: float
    op: Literal[">=", "<"]
    threshold: float
    unit: str
    met: bool = field(init=False)

    def __post_init__(self) -> None:
        self.met = self.value >= self.threshold if self.op == ">=" else self.value < self.threshold


@dataclass
class BenchResult:
    """DIR/<name>.json: what bench/report.py renders."""

    title: str
    description: str
    tables: list[Table]
    targets: list[Target]
    charts: list[str]

    def write(self, out: Path, name: str) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.json"
        path.write_text(json.dumps(asdict(self), indent=2, allow_nan=False) + "\n")
        return path


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def free_port() -> int:
    """A loopback port free right now, for a contender that must be told its port up front."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """The process and its descendants now (a scan of /proc: done once per measurement, not per sample)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, pending = [], [pid]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        pending += children.get(pid, [])
    return pids


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU time the processes have used so far (a process that is gone counts for nothing)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pids: Sequence[int]) -> int:
    """The resident memory of the processes now."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, StopIteration, IndexError):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            total += int(next(line for line in lines if line.startswith("VmRSS:")).split()[1]) * 1024
    return total


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, even killed, so that no contender outlives it."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ContenderProcess:
    """A server under test in its own process, its output kept in a log file (a pipe nobody reads could fill)."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: IO[bytes], log_path: Path) -> None:
        self.name = name
        self.process = process
        self._log = log
        self.log_path = log_path

    @classmethod
    async def start(
        cls,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ContenderProcess:
        """`argv` running with `env` (default: this process's environment) in `cwd` (default: this one's)."""
        log_path = log_dir / f"{name.replace(' ', '_').replace('=', '')}.log"
        log = log_path.open("wb")
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(os.environ if env is None else env),
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C of the bench reaches the bench only; it stops its contenders itself
            preexec_fn=_die_with_parent,
        )
        return cls(name, process, log, log_path)

    def failure(self, what: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace")[-3000:]
        return RuntimeError(f"{self.name}: {what}; its output ends with:\n{tail}")

    def pids(self) -> list[int]:
        """The process and its children now, for `cpu_seconds` and `rss_bytes`."""
        return process_tree(self.process.pid)

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            raise self.failure(f"exited with status {self.process.returncode}")

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._log.close()


async def wait_grpc_serving(target: str, contender: ContenderProcess) -> float:
    """Seconds until the server's overall health is SERVING, watched (not polled) from the moment this is called."""
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target, options=FAST_RECONNECT) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=READY_TIMEOUT
        )
        exited = asyncio.ensure_future(contender.process.wait())
        try:
            while True:
                update = asyncio.ensure_future(watch.read())
                await asyncio.wait({update, exited}, return_when=asyncio.FIRST_COMPLETED)
                if not update.done():
                    update.cancel()
                    raise contender.failure("exited before reporting SERVING")
                response = update.result()
                if response is grpc.aio.EOF:
                    raise contender.failure("ended its health watch before SERVING")
                assert isinstance(response, health_pb2.HealthCheckResponse)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.perf_counter() - started
        finally:
            exited.cancel()
            watch.cancel()


async def wait_for_line(contender: ContenderProcess, marker: str) -> str:
    """The first line of the contender's output that holds `marker`: for a server that binds a port of its own
    choosing and says which."""
    deadline = time.perf_counter() + READY_TIMEOUT
    while True:
        for line in contender.log_path.read_text(errors="replace").splitlines():
            if marker in line:
                return line
        contender.check_alive()
        if time.perf_counter() > deadline:
            raise contender.failure(f"did not say {marker!r} within {READY_TIMEOUT:.0f} s")
        await asyncio.sleep(0.05)


async def wait_http_ready(url: str, contender: ContenderProcess) -> None:
    """Poll `url` until it answers 200: HTTP servers under test offer nothing to wait on."""
    import aiohttp  # only the HTTP contenders need it

    deadline = time.perf_counter() + READY_TIMEOUT
    # A server may accept connections before it can answer (still loading): each attempt gets a few seconds.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            contender.check_alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.perf_counter() > deadline:
                raise contender.failure(f"{url} not ready after {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.05)


def python_module(module: str, *arguments: str) -> list[str]:
    return [sys.executable, "-m", module, *arguments]
