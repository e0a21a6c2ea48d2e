"""faster-whisper: speech to text (the engine and the audio reader it decodes uploads with)."""
