"""piper: text to speech (the engine, its audio encoders, and its voice files as the server reads them)."""
