"""Hostile input: arbitrary field values get a documented status with rich details, never UNKNOWN or INTERNAL.

What the modules of this package share: the ids of the models every test keeps loaded, the limits of a call, and the
base of each test's Hypothesis settings. The strategies are in `strategies` (the values of single fields in
`values`), the checks of an outcome in `checks`, the fixtures in `conftest`; the tests in `test_*`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc
from hypothesis import HealthCheck, Phase, settings
from hypothesis.configuration import set_hypothesis_home_dir

Code = grpc.StatusCode

HEALTH_ID = "hostile-input-health-check"  # the tiny model every test keeps loaded, and checks after each example
OPENAI_ID = "hostile-input-openai"  # models on the fake upstreams, for Generate
ANTHROPIC_ID = "hostile-input-anthropic"
OPENAI_KEY = "sk-hostile-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-hostile-0123456789"
CONTEXT_SIZE = 256  # tokens: llama.cpp's smallest context, so that no valid request generates for long
CALL_TIMEOUT = 30.0  # seconds: a bound on every call, far above what any of them takes
MAX_DELTAS = 8  # a stream that sent this many deltas was accepted; it is cancelled there to keep examples cheap
ONE_MEGABYTE = 1_000_000
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the server's default --max-message-bytes
SERVICE = "/warpcore.v1.InferenceService/"
# A refused loopback port: connection refused is UNAVAILABLE by the README's table, and nothing leaves the host.
REFUSED_BASE_URL = "http://127.0.0.1:1/v1"
# A host name that never resolves (RFC 2606), behind a scheme in capitals: UNAVAILABLE too, and nothing leaves the host.
UNRESOLVED_BASE_URL = "HTTP://upstream.invalid"
FAKE_BASE_URL = "{fake}"  # replaced by the fake upstream's base URL of the backend under test
# The README documents no field for an upstream's refusal (the fakes here never refuse a request they parse).
REASONS_WITHOUT_FIELD = {"UPSTREAM_INVALID_ARGUMENT"}

# Hypothesis caches (Unicode tables, source constants) outside the repository, not in ./.hypothesis.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "warpcore-hypothesis")
HYPOTHESIS = settings(  # the base of each test's settings
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it reruns failures many times
    database=None,  # no .hypothesis/ folder in the repository
    derandomize=True,  # the same examples on every run, so CI is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
