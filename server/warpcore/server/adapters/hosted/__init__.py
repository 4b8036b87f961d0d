"""The hosted-API adapters (OpenAI, Anthropic): one streaming skeleton, and per provider only what differs.

config: settings from the request or the environment. scrub: cleaning what an upstream sends back. errors: SDK
exceptions to domain errors. streaming: the shared adapter. openai, anthropic: the providers.
"""
