"""Render every DIR/<bench>.json into DIR/README.md: targets, descriptions, tables and charts, with date and host."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

# Sections in this order; any other result file follows, by name.
ORDER = ("api_gateway", "http_door", "event_loop", "local_model", "prompt_cache", "grammar", "embeddings", "startup")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cell(value: object) -> str:
    text = f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]


def target_row(target: dict[str, Any]) -> list[Any]:
    met = "yes" if target["met"] else "**no**"
    return [target["name"], f"{target['value']:,} {target['unit']}", f"{target['op']} {target['threshold']:,}", met]


def load_results(out: Path) -> list[tuple[str, dict[str, Any]]]:
    paths = sorted(
        out.glob("*.json"), key=lambda path: (ORDER.index(path.stem) if path.stem in ORDER else len(ORDER), path.stem)
    )
    return [(path.stem, json.loads(path.read_text())) for path in paths]


def render(out: Path, smoke: bool) -> str:
    results = load_results(out)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# warpcore benchmarks",
        "",
        f"Measured {now} on {cpu_model()}, {os.cpu_count()} cores, by `make bench` (`python -m bench.run`)."
        " The machine is shared and noisy: absolute figures drift from run to run, so every comparison is a ratio"
        " of contenders measured in the same run, back to back.",
        "",
    ]
    if smoke:
        lines += ["**Smoke run**: a few tokens on a tiny model, to check the harness; the figures mean nothing.", ""]
    targets = [[name, *target_row(target)] for name, result in results for target in result["targets"]]
    if targets:
        lines += ["## Targets", "", *markdown_table(["benchmark", "target", "value", "threshold", "met"], targets), ""]
    for _, result in results:
        lines += [f"## {result['title']}", "", result["description"], ""]
        for table in result["tables"]:
            lines += [f"**{table['caption']}**", "", *markdown_table(table["columns"], table["rows"]), ""]
        if result["targets"]:
            rows = [target_row(target) for target in result["targets"]]
            lines += ["**Targets**", "", *markdown_table(["target", "value", "threshold", "met"], rows), ""]
        lines += [f"![{chart}]({chart})" for chart in result["charts"]]
        lines += [""] if result["charts"] else []
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the directory holding the result files")
    parser.add_argument("--smoke", action="store_true", help="say that the figures come from a smoke run")
    arguments = parser.parse_args()
    readme = arguments.out / "README.md"
    readme.write_text(render(arguments.out, arguments.smoke))
    print(f"wrote {readme}")


if __name__ == "__main__":
    main()
