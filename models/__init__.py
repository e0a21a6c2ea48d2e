"""Model side of aistack, one package per concern; knows nothing about HTTP or the tray.

- core: settings and the contract's error kinds (imports nothing from models);
- store: the catalog, installed models, downloads (imports core);
- hardware: the GPU, memory estimates, GPU-or-CPU choice, fit, game mode (imports core, store);
- engines: faster-whisper, piper, llama.cpp, each in its runner process (imports core, store, hardware);
- runtime: the manager, runners, protocol, registry, placement, queue, status (imports all of the above);
- naming: what a request's `model` and `voice` mean (imports core, store, the registry).
"""
