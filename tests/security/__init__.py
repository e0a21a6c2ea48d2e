"""Hostile input: Host and Origin, connections, fuzzing, GGUF files, JSON bounds, surrogates, uploads."""
