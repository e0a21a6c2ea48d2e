"""HTTP side of aistack: the FastAPI app, one router per capability, the error envelope."""
