"""Loopback fakes of the hosted LLM APIs (OpenAI, Anthropic) for tests that drive the real vendor SDKs."""
