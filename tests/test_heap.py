"""A vendor SDK imported while serving is kept out of the garbage collector's walks (server/warpcore/server/heap.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from warpcore.server.core.domain import BackendKind

# In a process of its own, as a server's first call naming a backend: the adapter's module and its SDK are imported,
# then the script reports whether the SDK's client class is among the objects each full collection walks.
IMPORT_AND_REPORT = textwrap.dedent(
    """
    import gc, importlib, json, sys

    from warpcore.server.adapters.factory import adapter_type
    from warpcore.server.core.domain import BackendKind

    adapter_type(BackendKind[sys.argv[1]])
    sdk = importlib.import_module(sys.argv[2])
    walked = {id(thing) for thing in gc.get_objects()}
    print(json.dumps({"walked": id(sdk.AsyncClient) in walked, "frozen": gc.get_freeze_count()}))
    """
)


@pytest.mark.parametrize(("backend", "sdk"), [(BackendKind.OPENAI, "openai"), (BackendKind.ANTHROPIC, "anthropic")])
def test_a_backend_first_used_while_serving_leaves_its_sdk_out_of_every_collection(
    backend: BackendKind, sdk: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_REPORT, backend.name, sdk],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["walked"] is False
    assert report["frozen"] > 10_000  # the SDK's modules, types and their pydantic validators
