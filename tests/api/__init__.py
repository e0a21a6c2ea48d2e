"""The /v1 contract through the real server and the OpenAI SDK: speech to text, text to speech, chat, HTTP, observability."""
