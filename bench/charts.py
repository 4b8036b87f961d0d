"""PNG charts for the benchmark report (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: files only, no display

import matplotlib.pyplot as plt


def line_chart(
    path: Path,
    title: str,
    x_label: str,
    y_label: str,
    xs: Sequence[int],
    series: Mapping[str, Sequence[float]],
    log_y: bool = False,
) -> Path:
    """One line per contender over a few x values (e.g. concurrent streams), which are the ticks."""
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, ys in series.items():
        axes.plot(xs, ys, marker="o", label=name)
    if len(xs) > 2 and xs[-1] / xs[0] >= 8:
        axes.set_xscale("log", base=2)
    axes.set_xticks(list(xs), [str(x) for x in xs])
    if log_y:
        axes.set_yscale("log")
    else:
        axes.set_ylim(bottom=0)
    axes.set(title=title, xlabel=x_label, ylabel=y_label)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def bar_chart(path: Path, title: str, y_label: str, bars: Mapping[str, float], threshold: float | None = None) -> Path:
    """One bar per case, with the target drawn as a dashed line when there is one."""
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    axes.bar(list(bars), list(bars.values()), color="tab:blue")
    if threshold is not None:
        axes.axhline(threshold, color="tab:red", linestyle="--", label=f"target {threshold:g}")
        axes.legend(fontsize="small")
    axes.set(title=title, ylabel=y_label)
    axes.tick_params(axis="x", labelsize="small")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def grouped_bar_chart(
    path: Path,
    title: str,
    y_label: str,
    groups: Sequence[str],
    panels: Mapping[str, Mapping[str, Sequence[float | None]]],
    log_y: bool = False,
) -> Path:
    """Panels side by side on one y axis (e.g. one per protocol), each with a cluster of bars per group (e.g. a
    workload), one bar per series (e.g. a contender) holding a value per group; a missing value draws no bar."""
    figure, axes = plt.subplots(1, len(panels), figsize=(12, 4.5), sharey=True, squeeze=False)
    for axis, (panel, series) in zip(axes[0], panels.items(), strict=True):
        width = 0.8 / len(series)
        for index, (name, values) in enumerate(series.items()):
            positions = [slot + (index - (len(series) - 1) / 2) * width for slot in range(len(groups))]
            axis.bar(positions, [value or 0.0 for value in values], width, label=name)
        axis.set_xticks(range(len(groups)), list(groups), fontsize=8)
        axis.set_title(panel)
        if log_y:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(y_label)
    axes[0][0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
