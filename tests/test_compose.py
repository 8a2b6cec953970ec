"""docker-compose.yml, the Dockerfile and deploy/, checked statically: CI has no Docker engine.

What is checked is what would otherwise break only at `docker compose up` in production: a
setting the code does not read, a secret written into the file, a search attribute the cluster
lacks, an image that moves under us, a worker that cannot be scaled.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from steward import search_attributes
from steward.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SETUP_SERVICE = "temporal-setup"
STEWARD_SERVICES = ("api", "worker")
PROXY = "api-proxy"
COLLECTOR = "otel-collector"
SETTINGS_VARIABLES = {f"STEWARD_{name.upper()}" for name in Settings.model_fields}
SECRET_VARIABLES = ("STEWARD_JWT_SECRET", "STEWARD_ENCRYPTION_KEYS", "STEWARD_NOTIFY_WEBHOOK_SECRET",
                    "POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_PASSWORD", "MINIO_ROOT_PASSWORD",
                    "AWS_SECRET_ACCESS_KEY", "REDIS_PASSWORD")
# `${NAME:?message}`: compose refuses to start without the variable, and there is no default.
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*:\?[^}]*\}$")
WAITING_CONDITIONS = {"service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either compose form (YAML anchors already merged)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from short ("[ip:]host:container") or long syntax."""
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) >= 2:
            pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


def build_of(service: dict[str, Any]) -> tuple[Path, str]:
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    return (ROOT / build.get("context", ".")).resolve(), build.get("dockerfile", "Dockerfile")


def mounted_host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file in this repository a bind mount shows at `container_path`."""
    target = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        mount_point = PurePosixPath(rest.split(":")[0])
        if source.startswith(".") and target.is_relative_to(mount_point):
            return ROOT / source / target.relative_to(mount_point)
    raise AssertionError(f"nothing from the repository is mounted at {container_path}")


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            instructions = []
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


def test_compose_file_declares_temporal_steward_and_setup_services(services: dict) -> None:
    expected = {"postgresql", "temporal", "temporal-ui", SETUP_SERVICE, *STEWARD_SERVICES}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


def test_every_image_is_pinned_to_a_version_tag(services: dict) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        if "image" not in service:
            continue
        image = service["image"]
        repository_and_tag = image.split("@")[0].rsplit("/", 1)[-1]
        tag = repository_and_tag.partition(":")[2]
        assert "@sha256:" in image or tag not in ("", "latest"), f"{name}: {image} is not pinned"


def test_api_and_worker_run_one_image_built_from_the_dockerfile(services: dict) -> None:
    api, worker = services["api"], services["worker"]
    assert build_of(api) == build_of(worker) == (ROOT, "Dockerfile")
    assert api.get("image") == worker.get("image")
    assert api["command"] == ["api"]
    assert worker["command"] == ["worker"]


def test_api_and_worker_share_the_steward_configuration(compose: dict, services: dict) -> None:
    shared = {key: str(value) for key, value in compose["x-steward-env"].items()}
    assert "TEMPORAL_ADDRESS" in shared, "processes must reach the compose Temporal, not embed one"
    for name in STEWARD_SERVICES:
        env = environment(services[name])
        assert {key: env.get(key) for key in shared} == shared, f"{name} overrides shared settings"


def test_every_steward_variable_set_is_a_settings_field(services: dict) -> None:
    steward_variables = {
        (name, key)
        for name, service in services.items()
        for key in environment(service)
        if key.startswith("STEWARD_")
    }
    assert steward_variables, "no STEWARD_* variable found: is the x-steward-env anchor still merged?"
    unknown = sorted(f"{name}: {key}" for name, key in steward_variables if key not in SETTINGS_VARIABLES)
    assert not unknown, f"not fields of steward.settings.Settings (ignored by the code): {unknown}"


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_secret_is_required_from_the_environment_not_written_in_the_file(services: dict, variable: str) -> None:
    values = {name: environment(s)[variable] for name, s in services.items() if variable in environment(s)}
    assert values, f"no service sets {variable}"
    literal = {name: value for name, value in values.items() if not REQUIRED_REFERENCE.match(value)}
    assert not literal, f"{variable} must be a required ${{{variable}:?...}} reference, not {literal}"


def test_api_replicas_listen_beyond_loopback_and_only_the_proxy_is_published(services: dict) -> None:
    api = services["api"]
    assert not api.get("ports"), "replicas would collide on a published port; the proxy publishes"
    assert "container_name" not in api
    assert api["deploy"]["replicas"] >= 2
    env = environment(api)
    assert env["STEWARD_API_HOST"] == "0.0.0.0"
    assert int(env.get("STEWARD_API_PORT", Settings.model_fields["api_port"].default)) == 8000
    assert (8000, 8000) in published_ports(services[PROXY])


def test_the_proxy_spreads_requests_over_every_api_replica_and_streams_events(services: dict) -> None:
    conf = mounted_host_path(services[PROXY], "/etc/nginx/conf.d/default.conf").read_text()
    upstream = re.search(r"upstream (\w+) \{(.*?)\}", conf, re.S)
    assert upstream, "no upstream block"
    # `resolve` re-reads every replica's address from Docker's DNS as replicas come and go.
    assert re.search(r"server api:8000 [^;]*\bresolve\b", upstream.group(2))
    assert "resolver 127.0.0.11" in conf
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert "proxy_buffering off;" in conf  # event streams leave as they happen
    read_timeout = re.search(r"proxy_read_timeout (\w+);", conf).group(1)
    assert seconds(read_timeout) > Settings.model_fields["events_heartbeat_s"].default
    # The client's address is the proxy's own view of it, never a header the client sent.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert services[PROXY]["depends_on"]["api"]["condition"] == "service_healthy"


def test_the_api_trusts_forwarded_headers_from_the_proxy_alone(compose: dict, services: dict) -> None:
    proxy_address = services[PROXY]["networks"]["default"]["ipv4_address"]
    assert environment(services["api"])["STEWARD_FORWARDED_ALLOW_IPS"] == proxy_address
    (network,) = compose["networks"]["default"]["ipam"]["config"]
    address = ipaddress.ip_address(proxy_address)
    assert address in ipaddress.ip_network(network["subnet"])
    # Docker hands out addresses from ip_range only, so no other container can take the proxy's.
    assert address not in ipaddress.ip_network(network["ip_range"])


def test_traces_and_every_workers_metrics_reach_the_collector(compose: dict, services: dict) -> None:
    config = yaml.safe_load(mounted_host_path(services[COLLECTOR], "/etc/otelcol/config.yaml").read_text())
    endpoint = re.fullmatch(r"\$\{OTEL_EXPORTER_OTLP_ENDPOINT-(.+)\}",
                            compose["x-steward-env"]["OTEL_EXPORTER_OTLP_ENDPOINT"]).group(1)
    assert endpoint == f"http://{COLLECTOR}:{config['receivers']['otlp']['protocols']['http']['endpoint'].split(':')[-1]}"
    (scrape,) = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    (discovery,) = scrape["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["type"] == "A"  # every replica, not one
    worker_port = Settings.model_fields["worker_metrics_port"].default
    assert discovery["port"] == int(environment(services["worker"]).get("STEWARD_WORKER_METRICS_PORT", worker_port))
    assert environment(services["worker"])["STEWARD_WORKER_METRICS_HOST"] == "0.0.0.0"
    for name, pipeline in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(config[kind]), f"{name} uses an undefined {kind[:-1]}"


# Services with nothing inside to probe with (no shell, no HTTP client), named with why.
UNPROBED = {COLLECTOR: "distroless image; health_check extension on :13133",
            "temporal-ui": "nothing depends on it; no probe tool in the image"}


def test_every_long_running_service_has_a_healthcheck(services: dict) -> None:
    one_shot = {name for name, s in services.items() if s.get("restart") is None}
    missing = sorted(set(services) - one_shot - set(UNPROBED) - {n for n, s in services.items() if "healthcheck" in s})
    assert not missing, f"no healthcheck: {missing}"


def test_every_image_we_run_is_one_that_runs_as_a_non_root_user(services: dict) -> None:
    # Official images of databases drop privileges themselves; these are the ones we chose for it.
    assert services[PROXY]["image"].startswith("nginxinc/nginx-unprivileged:")
    assert services[COLLECTOR]["image"].startswith("otel/opentelemetry-collector:")  # uid 10001


def test_the_dockerfile_pins_one_base_image_to_a_patch_release() -> None:
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M)
    assert len(set(bases)) == 1, f"stages on different bases: {bases}"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0]), f"{bases[0]} moves under us"


def test_api_healthcheck_probes_readiness_on_the_api_port(services: dict) -> None:
    probe = " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in probe
    assert ":8000/" in probe


def test_temporal_ui_is_published_and_points_at_the_compose_temporal(services: dict) -> None:
    ui = services["temporal-ui"]
    assert any(container == 8080 for _, container in published_ports(ui))
    assert environment(ui)["TEMPORAL_ADDRESS"] == "temporal:7233"


@pytest.mark.parametrize("name", ["temporal", "temporal-ui"])
def test_unauthenticated_temporal_endpoints_publish_on_loopback_only(services: dict, name: str) -> None:
    # Neither the frontend nor the UI has a login; both can cancel and terminate runs.
    for port in services[name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_temporal_persists_to_postgresql(services: dict) -> None:
    env = environment(services["temporal"])
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in services["postgresql"]["volumes"])


def test_setup_service_registers_every_search_attribute_with_its_type(services: dict) -> None:
    setup = services[SETUP_SERVICE]
    declared = environment(setup)["SEARCH_ATTRIBUTES"].split()
    assert sorted(declared) == sorted(search_attributes.cli_declarations())
    script = mounted_host_path(setup, setup["entrypoint"][-1]).read_text()
    assert "$SEARCH_ATTRIBUTES" in script
    assert "temporal operator search-attribute create" in script


def test_runs_cannot_start_before_the_cluster_is_set_up(services: dict) -> None:
    for name in STEWARD_SERVICES:
        assert services[name]["depends_on"][SETUP_SERVICE]["condition"] == "service_completed_successfully"
    assert services[SETUP_SERVICE]["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_every_dependency_waits_for_health_or_completion(services: dict) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions only orders starts"
        for dependency, spec in depends_on.items():
            assert spec.get("condition") in WAITING_CONDITIONS, f"{name} -> {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"


def test_every_file_mounted_from_the_repository_exists(services: dict) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).partition(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_worker_is_scalable(services: dict) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container name allows one replica only"
    assert not worker.get("ports"), "replicas would collide on a published port"
    assert worker["deploy"]["replicas"] >= 2


def test_worker_stop_grace_outlasts_its_activity_grace(services: dict) -> None:
    worker = services["worker"]
    default_grace = Settings.model_fields["worker_grace_s"].default
    grace = float(environment(worker).get("STEWARD_WORKER_GRACE_S", default_grace))
    # Docker's default is 10 s; the worker needs longer to let running activities finish.
    assert seconds(worker.get("stop_grace_period", "10s")) > grace


def test_dockerfile_runs_steward_as_a_non_root_user() -> None:
    instructions = dockerfile_final_stage()
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the final stage never leaves root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_entrypoint_is_the_steward_cli_serving_the_api_by_default() -> None:
    instructions = dict(dockerfile_final_stage())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(instructions["ENTRYPOINT"]) == ["steward"]
    assert "steward" in scripts
    assert json.loads(instructions["CMD"]) == ["api"]


def test_build_context_leaves_out_local_secrets_and_state() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".steward", ".git", ".venv"} <= ignored


def test_the_clusters_dynamic_config_carries_the_dev_servers_tuning() -> None:
    from steward.devserver import DYNAMIC_CONFIG

    cluster = yaml.safe_load((ROOT / "deploy" / "temporal-dynamicconfig.yaml").read_text())

    for key, value in DYNAMIC_CONFIG.items():
        assert [entry["value"] for entry in cluster[key]] == [value], key


def test_api_and_worker_share_one_bucket_and_one_redis_whatever_the_replicas(compose: dict, services: dict) -> None:
    shared = compose["x-steward-env"]
    assert shared["STEWARD_OBJECT_STORE"] == "s3" and shared["STEWARD_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert shared["STEWARD_REDIS_URL"].endswith("@redis:6379/0") and "${REDIS_PASSWORD:?" in shared["STEWARD_REDIS_URL"]
    setup = " ".join(services["minio-setup"]["entrypoint"])
    assert f"local/{shared['STEWARD_S3_BUCKET']}" in setup and "--ignore-existing" in setup  # made once, kept
    for name in STEWARD_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["minio-setup"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert "--appendonly yes" in " ".join(services["redis"]["command"])  # the spend ledger survives a restart
