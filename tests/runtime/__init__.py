"""How models run: runners, loading and eviction, the queue, placement, the GPU (with a stand-in NVML)."""
