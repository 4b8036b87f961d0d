"""What a llama.cpp model refuses for what it is or where it stands: a file llama.cpp cannot read, a model being
unloaded, a model loaded for embeddings asked to generate."""

from __future__ import annotations

from warpcore.server.core.errors import FailedPreconditionError, UnavailableError


def unloadable(model: str) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"llama.cpp could not load {model!r}: it is not a GGUF model this server can run (details in the server log)",
        reason="MODEL_LOAD_FAILED",
    )


def unloading() -> UnavailableError:
    return UnavailableError("the model is being unloaded", reason="MODEL_UNLOADING")


def loaded_for_embeddings() -> FailedPreconditionError:
    return FailedPreconditionError(
        "this model was loaded for embeddings (llama_cpp.embedding), so it cannot generate or count a prompt; load"
        " the same file again under another model_id without embedding for that",
        field="model_id",
        reason="MODEL_LOADED_FOR_EMBEDDINGS",
    )
