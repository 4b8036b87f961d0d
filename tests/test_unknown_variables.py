"""A WARPCORE_* variable that nothing reads is warned of as the server starts (an outside tester's finding: a
manifest's WARPCORE_METRIC_PORT left the metrics port off, and nothing said so)."""

from __future__ import annotations

from pathlib import Path

from tests.server_process import log_lines_until, start

# Lazy: declared at start, its key's variable read then, and no upstream reached.
CONFIG = """
[[models]]
id = "gpt"
backend = "openai"
model = "gpt-4o-mini"
lazy = true

[models.api]
api_key_env = "WARPCORE_OPENAI_KEY"
"""


async def test_each_misspelled_variable_is_named_with_the_setting_it_was_likely_meant_for(
    models_path: Path, tmp_path: Path
) -> None:
    config = tmp_path / "warpcore.toml"
    config.write_text(CONFIG)
    process = await start(
        models_path,
        "--config",
        str(config),
        "--log-format",
        "json",
        WARPCORE_METRIC_PORT="9090",
        WARPCORE_GRACE_SECONDS="5",
        WARPCORE_MODEL_PATH="/models",  # MODELS_PATH, which has no prefix
        WARPCORE_VERBOSE="1",  # like no setting: no guess
        # Read, so never warned of: a setting, the client's (a sidecar's environment may hold them), the key the
        # config names.
        WARPCORE_GRACE="5",
        WARPCORE_TARGET="unix:///var/run/warpcore/warpcore.sock",
        WARPCORE_OPENAI_KEY="sk-test-key",
    )
    try:
        started = await log_lines_until(process, "serving on")
    finally:
        process.terminate()
        await process.wait()
    warnings = [(line["level"], line["message"]) for line in started if "not a warpcore setting" in str(line)]
    ignored = "is not a warpcore setting and is ignored"
    assert warnings == [
        ("warning", f"WARPCORE_GRACE_SECONDS {ignored}"),
        ("warning", f"WARPCORE_METRIC_PORT {ignored} (did you mean WARPCORE_METRICS_PORT?)"),
        ("warning", f"WARPCORE_MODEL_PATH {ignored} (did you mean MODELS_PATH?)"),
        ("warning", f"WARPCORE_VERBOSE {ignored}"),
    ]
    # A warning, not a refusal: a manifest written for a newer server still starts this one.
    assert "serving on" in str(started[-1]["message"])


async def test_a_vendor_sdks_base_url_variable_is_named_with_the_one_warpcore_reads(models_path: Path) -> None:
    """A tester's finding: OPENAI_BASE_URL, the openai SDK's own name, sent each call to the vendor's URL in silence."""
    process = await start(
        models_path,
        "--log-format",
        "json",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
        ANTHROPIC_API_BASE="http://127.0.0.1:9",  # read: the SDK's name beside it is no mistake worth a word
    )
    try:
        started = await log_lines_until(process, "serving on")
    finally:
        process.terminate()
        await process.wait()
    assert [line["message"] for line in started if line["level"] == "warning"] == [
        "OPENAI_BASE_URL is not read by warpcore, which takes OPENAI_API_BASE: hosted models without a base_url of"
        " their own go to the API's default base URL"
    ]
