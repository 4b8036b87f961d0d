"""Backend adapters behind the `Adapter` protocol, one module per backend."""
