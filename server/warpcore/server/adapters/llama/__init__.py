"""The llama.cpp backend: GGUF models under MODELS_PATH, run in-process through llama-cpp-python."""
