"""`make bench`: every benchmark in its own process (one failing is reported, the others still run), then the report."""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
from pathlib import Path

from bench.harness import BenchResult

BENCHES = ("api_gateway", "http_door", "event_loop", "local_model", "prompt_cache", "grammar", "embeddings", "startup")
LOG_TAIL_LINES = 40


def run(name: str, out: Path, smoke: bool) -> bool:
    """Run one benchmark, echoing its output; if it fails, leave a result file that says so."""
    result_file = out / f"{name}.json"
    result_file.unlink(missing_ok=True)  # a stale result must never pass for this run's
    command = [sys.executable, "-m", f"bench.{name}", "--out", str(out), *(["--smoke"] if smoke else [])]
    print(f"== {' '.join(command[1:])}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            tail.append(line)
    if process.returncode == 0 and result_file.exists():
        return True
    output = "".join(tail).replace("```", "'''")
    BenchResult(
        title=f"{name}: failed",
        description=f"`python -m bench.{name}` exited with status {process.returncode}; its output ended with:"
        f"\n\n```\n{output}```",
        tables=[],
        targets=[],
        charts=[],
    ).write(out, name)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where results, charts and README.md go")
    parser.add_argument("--smoke", action="store_true", help="short versions: seconds each, no target asserted")
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES), help="run just these")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    failed = [name for name in arguments.only if not run(name, arguments.out, arguments.smoke)]
    report = [
        sys.executable,
        "-m",
        "bench.report",
        "--out",
        str(arguments.out),
        *(["--smoke"] if arguments.smoke else []),
    ]
    subprocess.run(report, check=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see {arguments.out / 'README.md'})")


if __name__ == "__main__":
    main()
