"""Every Steward setting, read from the environment (prefix STEWARD_) in one place.

The API, the worker, the supervisor and the CLI all build their configuration from
`Settings()`, so a variable means the same thing to every process. docs/configuration.md is the
reference for each field.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.envconfig import ClientConfigProfile

JWT_SECRET_FILE = "jwt-secret"
# A secret file readable by anyone else on the machine is no secret.
SECRET_FILE_MODE = 0o600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STEWARD_", extra="ignore")

    data_dir: Path = Field(Path(".steward"), description="Where runtime state lives.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    temporal_port: int = Field(7233, ge=1, le=65535)
    ui_port: int = Field(8233, ge=1, le=65535)
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 signing secret; generated into the data dir when unset."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    namespace: str = "default"
    # Extra importable packages scanned for workflow modules, beside the built-in `workflows`.
    workflow_packages: list[str] = Field(default_factory=list)
    worker_grace_s: float = Field(
        30.0, ge=0, description="How long a stopping worker lets running activities finish."
    )
    dev_tenant: str = "acme"

    @property
    def temporal_db_path(self) -> Path:
        return self.data_dir / "temporal.db"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @cached_property
    def temporal_profile(self) -> ClientConfigProfile:
        """The Temporal envconfig profile (TOML file + TEMPORAL_* variables) in force."""
        return ClientConfigProfile.load()

    @property
    def uses_embedded_temporal(self) -> bool:
        """True unless TEMPORAL_ADDRESS or an envconfig profile names a server to use."""
        return not self.temporal_profile.address

    @property
    def temporal_address(self) -> str:
        return self.temporal_profile.address or f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_namespace(self) -> str:
        return self.temporal_profile.namespace or self.namespace

    @property
    def ui_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ui_port}" if self.uses_embedded_temporal else None

    def jwt_signing_secret(self) -> str:
        """The HS256 secret: STEWARD_JWT_SECRET, else the data dir's file, created on first use."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return read_or_create_secret_file(self.data_dir / JWT_SECRET_FILE)


def read_or_create_secret_file(path: Path) -> str:
    """Return the secret stored at `path`, creating it (mode 0600) if it does not exist.

    Creation uses O_EXCL so two processes starting at once agree on one secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{path} has mode {mode:o}; a secret file must be 0600 (chmod 600 {path})"
            ) from None
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
