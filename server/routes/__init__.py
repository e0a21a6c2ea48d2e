"""One router per capability, plus health, models and admin."""
