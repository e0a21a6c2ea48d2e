"""Which changes between two status readings deserve a notification: a finished or failed download, a failed load."""

from __future__ import annotations

from typing import Any

_DOWNLOADING = ("queued", "downloading", "verifying")


def notices(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """Messages for what changed from `before` to `after` (model status rows)."""
    old = {str(row.get("id")): row for row in before}
    messages = []
    for row in after:
        model_id, state = str(row.get("id")), str(row.get("state"))
        was = str((old.get(model_id) or {}).get("state"))
        if was in _DOWNLOADING and state in ("installed", "loading", "loaded"):
            messages.append(f"{model_id} is downloaded and ready to use.")
        elif state == "failed" and was != "failed":
            error = row.get("error") or "no reason given"
            verb = "download" if was in _DOWNLOADING else "load"
            messages.append(f"{model_id} failed to {verb}: {error}")
    return messages
