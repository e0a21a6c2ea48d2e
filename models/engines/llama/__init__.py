"""llama.cpp: chat, completion and embeddings on GGUF models (the engine and its decoding helpers)."""
