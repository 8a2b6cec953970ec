"""What of a request's path may be logged: links people follow carry their credential in it."""

from __future__ import annotations

from steward import action_links, activation

# Paths whose last segment is a credential (an action link's or an activation link's token): log
# lines show the prefix only, so a log reader cannot use a link nobody has used yet.
CREDENTIAL_PATHS = (f"{action_links.PATH}/", f"{activation.PATH}/", "/v1/activations/")


def loggable_path(path: str) -> str:
    for prefix in CREDENTIAL_PATHS:
        if path.startswith(prefix):
            return f"{prefix}<token>"
    return path
