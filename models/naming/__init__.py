"""What a request's `model` and `voice` mean: aliases, `auto`, speech-to-text and voice choice,
resolved against the store. Imports models.core, models.store and the engine registry (models.runtime.registry)."""
