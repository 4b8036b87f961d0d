"""Bounds of a local model's settings, in one place for the server (a LoadModel's LocalBackendConfig, its config
file's [models.local] table, the environment) and for the SDK and the warpcore command, which refuse before any call
what the server would refuse, in the words of the bound the protocol gives. It sits outside warpcore.client, as
_api_settings does, so that the server reads it without importing grpc."""

MAX_PROMPT_CACHE_TOKENS = 1048576
"""The largest prompt cache one local model may keep, in tokens of KV cells (LocalBackendConfig.prompt_cache_tokens)."""
