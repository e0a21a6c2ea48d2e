"""Models on disk: the catalog and its data, the installed-model store, downloads (hub, PyPI wheels,
resumable part files), user-added models and GGUF reading. Imports models.core only."""
