"""The runtime: how models run. The runner protocol, the engine registry, placement, queueing and model status."""
