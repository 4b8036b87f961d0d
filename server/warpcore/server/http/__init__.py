"""The HTTP front door: the OpenAI and Anthropic dialects over the same engine as gRPC."""
