"""What the tests share: stand-in engines, a stand-in Hugging Face and NVML, speech and GGUF makers, observers."""
