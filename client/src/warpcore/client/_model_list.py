"""`warpcore models`: the models as a table or JSON, with --residency what each loaded one costs and when it goes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from warpcore.client import Client, Model, Residency
from warpcore.client._cli_load import API, given_settings

COLUMNS = {"ID": "id", "BACKEND": "backend", "STATE": "state", "CONTEXT": "context_size", "NAME": "name"}
NONE = "-"
"""A cell with nothing to show: a context size not known (0: a hosted model's that its API does not tell, or a file's
offered but not loaded), a residency cell of a model that is not loaded, or an expiry that is not coming (in use, or
kept forever)."""


def span(seconds: float | None) -> str:
    """A keep_alive as the server's --keep-alive takes it: "forever" (None), "5m", "2h", "1d", else "90s"."""
    if seconds is None:
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def size(nbytes: int) -> str:
    """E.g. "1.2MiB", "3.4GiB"; "0" for a hosted model."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f}{unit}"
    return str(nbytes)


def expiry(residency: Residency) -> str:
    """Whole seconds until it is unloaded if left idle, e.g. "29s"."""
    if residency.expires_at is None:
        return NONE
    return span(max(0, round(residency.expires_at.timestamp() - time.time())))


RESIDENCY: dict[str, Callable[[Residency], str]] = {
    "MEMORY": lambda r: size(r.memory_bytes),
    "SLOTS": lambda r: f"{r.slots_busy}/{r.slots_total}",
    "QUEUE": lambda r: str(r.queue_depth),
    "KEEP-ALIVE": lambda r: span(r.keep_alive),
    "EXPIRES": expiry,
}
"""The columns --residency adds before NAME: estimated memory, slots busy/total, generations waiting, keep_alive, and
the time left before an idle model is unloaded."""


def header(residency: bool) -> list[str]:
    names = list(COLUMNS)
    return [*names[:-1], *RESIDENCY, names[-1]] if residency else names


def state(model: Model) -> str:
    """The model's state, but "offered" for one a backend only offers: "available" said the same of a model that
    a generate loads on its own, and of one that must be loaded first."""
    return "offered" if model.state == "available" and not model.loads_on_demand else model.state


def row(model: Model, residency: bool) -> list[str]:
    cells = [str(getattr(model, key) or NONE) for key in COLUMNS.values()]
    cells[list(COLUMNS).index("STATE")] = state(model)
    if residency:
        found = model.residency
        cells[-1:-1] = [cell(found) if found else NONE for cell in RESIDENCY.values()]
    return cells


def table(listed: Sequence[Model], residency: bool = False) -> str:
    """The models as aligned columns under a header."""
    rows = [header(residency), *(row(model, residency) for model in listed)]
    widths = [max(len(line[i]) for line in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in rows)


def residency_json(residency: Residency | None) -> dict[str, Any] | None:
    if residency is None:
        return None
    return {
        "memory_bytes": residency.memory_bytes,
        "slots_busy": residency.slots_busy,
        "slots_total": residency.slots_total,
        "queue_depth": residency.queue_depth,
        "last_used": residency.last_used.isoformat() if residency.last_used else None,
        "expires_at": residency.expires_at.isoformat() if residency.expires_at else None,
        "keep_alive": residency.keep_alive,
    }


def models(client: Client, args: argparse.Namespace) -> int:
    listed = client.list_models(args.backend, **given_settings(args, API))
    if args.json:
        found = []
        for model in listed:
            fields: dict[str, Any] = {key: getattr(model, key) for key in COLUMNS.values()}
            fields["loads_on_demand"] = model.loads_on_demand
            fields["capabilities"] = dataclasses.asdict(model.capabilities) if model.capabilities else None
            if args.residency:
                fields["residency"] = residency_json(model.residency)
            found.append(fields)
        print(json.dumps(found, indent=2))
    else:
        print(table(listed, args.residency))
    return 0
