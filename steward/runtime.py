"""The settings of this process, for code that has no other way to receive them: activities.

The worker configures it with the settings it was started with; tests configure it with theirs.
Workflows never read it (configuration reaches them through inputs and activity results).
"""

from __future__ import annotations

from steward.codec import Keyring
from steward.settings import Settings

_settings: Settings | None = None
_keyring: Keyring | None = None


def configure(settings: Settings | None) -> None:
    """Use `settings` from now on (None: read the environment again on next use)."""
    global _settings, _keyring
    _settings, _keyring = settings, None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def keyring() -> Keyring:
    """The encryption keyring of these settings, read once: activities must not re-read key
    files on every call."""
    global _keyring
    if _keyring is None:
        _keyring = Keyring.from_settings(settings())
    return _keyring
