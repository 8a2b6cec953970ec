"""Settings: the generated JWT secret, and choosing embedded vs external Temporal."""

from __future__ import annotations

import stat

import pytest

from steward.settings import Settings


def test_jwt_secret_is_generated_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("STEWARD_JWT_SECRET", raising=False)
    settings = Settings(data_dir=tmp_path)
    first = settings.jwt_signing_secret()
    path = tmp_path / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 48
    assert Settings(data_dir=tmp_path).jwt_signing_secret() == first


def test_secret_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "jwt-secret"
    path.write_text("leaky")
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="must be 0600"):
        Settings(data_dir=tmp_path).jwt_signing_secret()


def test_configured_secret_wins_over_the_file(tmp_path):
    assert Settings(data_dir=tmp_path, jwt_secret="from-env").jwt_signing_secret() == "from-env"
    assert not (tmp_path / "jwt-secret").exists()


def test_without_temporal_configuration_the_embedded_server_is_used(monkeypatch, tmp_path):
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_PROFILE", "TEMPORAL_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    settings = Settings(temporal_port=7999)
    assert settings.uses_embedded_temporal
    assert settings.temporal_address == "127.0.0.1:7999"
    assert settings.operator_ui_url == f"http://127.0.0.1:{settings.api_port}/ui/"


def test_temporal_address_variable_points_everything_at_that_cluster(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "steward-prod")
    settings = Settings()
    assert not settings.uses_embedded_temporal
    assert settings.temporal_address == "temporal.internal:7233"
    assert settings.temporal_namespace == "steward-prod"
    assert settings.operator_ui_url is None


def test_envconfig_profile_file_selects_a_cloud_namespace_with_api_key(monkeypatch, tmp_path):
    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.cloud]\naddress = "acme.a1b2c.tmprl.cloud:7233"\nnamespace = "acme.a1b2c"\napi_key = "k-123"\n'
    )
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    from steward.temporal_client import connect_options

    options = connect_options(Settings())
    assert options["target_host"] == "acme.a1b2c.tmprl.cloud:7233"
    assert options["namespace"] == "acme.a1b2c"
    assert options["api_key"] == "k-123"
    assert options["tls"] is True


def test_smtp_security_none_can_be_set_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STEWARD_SMTP_SECURITY", "none")
    assert Settings(data_dir=tmp_path).smtp_security == "none"
