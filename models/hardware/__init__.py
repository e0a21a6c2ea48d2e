"""The PC: the NVIDIA GPU through NVML, memory estimates, where each engine runs (GPU or CPU),
whether a model fits, and game mode. Imports models.core and models.store.model_store (GGUF headers) only."""
