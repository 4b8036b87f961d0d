"""The ranges inference.proto gives the sampling options, in one place for the server, which refuses a value outside
them, and for the warpcore command, which refuses it as a usage error before any call and names them in its help. It
sits outside warpcore.client, as _keep_alive does, so that the server reads it without importing grpc."""

MAX_TEMPERATURE = 2.0
"""The hottest sampling temperature (OpenAI's range; 0 is greedy)."""
ANTHROPIC_MAX_TEMPERATURE = 1.0
"""The hottest Anthropic's API takes, its own rule: a Claude model's, and the HTTP door's Anthropic dialect's."""
MAX_PENALTY = 2.0
"""Largest presence or frequency penalty, either way (OpenAI's range)."""
