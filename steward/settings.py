"""Every Steward setting, read from the environment (prefix STEWARD_) in one place.

The API, the worker, the supervisor and the CLI all build their configuration from
`Settings()`, so a variable means the same thing to every process. docs/configuration.md is the
reference for each field.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.envconfig import ClientConfigProfile

from steward.files import create_once

JWT_SECRET_FILE = "jwt-secret"
WEBHOOK_SECRET_FILE = "webhook-secret"
AUDIT_SIGNING_KEY_FILE = "audit-signing-key"
API_KEYS_FILE = "api-keys.json"
# A secret file readable by anyone else on the machine is no secret.
SECRET_FILE_MODE = 0o600


class ModelPrice(BaseModel):
    input_per_million_usd: float = Field(ge=0)
    output_per_million_usd: float = Field(ge=0)


# List prices in USD per million tokens; override with STEWARD_LLM_PRICES (JSON) for your models.
DEFAULT_LLM_PRICES = {
    "gpt-4o-mini": ModelPrice(input_per_million_usd=0.15, output_per_million_usd=0.60),
    "gpt-4o": ModelPrice(input_per_million_usd=2.50, output_per_million_usd=10.00),
    "gpt-4.1-mini": ModelPrice(input_per_million_usd=0.40, output_per_million_usd=1.60),
}
# Steward's plans (customer-onboarding's `plan`) and the billing plan each subscribes to; a company
# maps them to its own Stripe plans or prices with STEWARD_BILLING_PLANS.
PLANS = ("starter", "team", "business", "enterprise")
DEFAULT_BILLING_PLANS = {plan: f"steward-{plan}" for plan in PLANS}
# Countries under comprehensive sanctions programmes; a compliance team sets its own list.
DEFAULT_SANCTIONED_COUNTRIES = ["CU", "IR", "KP", "SY"]
# Jurisdictions under a call for action or increased monitoring; again a team's own list in practice.
DEFAULT_HIGH_RISK_COUNTRIES = ["KP", "IR", "MM"]


class Settings(BaseSettings):
    # env_parse_none_str: STEWARD_X=none switches an optional setting off (e.g. the spend cap).
    model_config = SettingsConfigDict(
        env_prefix="STEWARD_", extra="ignore", populate_by_name=True, env_parse_none_str="none"
    )

    data_dir: Path = Field(Path(".steward"), description="Where runtime state lives.")
    font_cache: Path | None = Field(
        None, description="Where report fonts are prepared, once; <data_dir>/fonts when unset. Data dirs on one "
                          "machine may share one: its folders are named after what they hold, and built under a lock.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto the API believes: comma-separated "
                    "addresses or networks (CIDR), '*' for any. The client address limits per-address routes.")
    worker_metrics_port: int | None = Field(
        9464, ge=1, le=65535,
        description="The worker's Prometheus /metrics (the Temporal SDK's and Steward's business metrics), "
                    "on worker_metrics_host; none: off.")
    worker_metrics_host: str = "127.0.0.1"
    temporal_port: int = Field(7233, ge=1, le=65535)
    ui_port: int = Field(8233, ge=1, le=65535)
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 signing secret; generated into the data dir when unset."
    )
    # --- Authentication (docs/security.md) ---
    jwks_url: str | None = Field(None, description="Identity provider's JWKS: RS256/ES256 tokens are verified with it.")
    jwt_issuer: str | None = Field(None, description="Required `iss` of tokens, when set.")
    jwt_audience: str | None = Field(None, description="Required `aud` of tokens, when set.")
    jwt_leeway_s: int = Field(30, ge=0, le=300, description="Clock skew tolerated on exp/nbf/iat.")
    # Where an identity provider's tokens name the caller (docs/identity-providers.md): a claim
    # name or a dotted path into nested claims. Steward's own tokens always use the defaults.
    jwt_subject_claim: str = Field("sub", min_length=1, description="Claim naming the caller (Entra ID: oid).")
    jwt_tenant_claim: str = Field("tenant", min_length=1, description="Claim naming the caller's tenant "
                                                                      "(Entra ID: tid; Auth0: org_id).")
    jwt_roles_claim: str = Field("roles", min_length=1, description="Claim listing roles or groups "
                                                                    "(Keycloak: realm_access.roles; Okta: groups).")
    jwt_groups_claim: str = Field("groups", min_length=1, description="Claim listing approval groups.")
    jwt_role_map: dict[str, list[str]] | None = Field(
        None, description='Provider role or group -> Steward roles, as JSON ({"Steward.Approver": ["approver"]}); '
                          "when set, only mapped names give roles.")
    jwt_tenant_map: dict[str, str] | None = Field(
        None, description='Provider tenant id -> Steward tenant, as JSON ({"<Entra tid>": "acme"}); when set, a token '
                          "of an unmapped tenant is refused.")
    jwks_cache_s: int = Field(300, ge=0, description="How long fetched signing keys are trusted before a refetch.")
    rbac_policy: Path | None = Field(None, description="Role policy YAML; the shipped policies/rbac.yaml when unset.")

    # --- Encryption at rest ---
    encryption_keys: SecretStr | None = Field(
        None, description="kid:base64-32-byte-key pairs, comma-separated; the first encrypts, all decrypt."
    )
    encryption_key_file: Path | None = Field(
        None, description="File (mode 0600) holding the same; <data_dir>/encryption-keys, generated, when unset."
    )
    codec_cors_origin: str | None = Field(None, description="Origin allowed to call /codec; the embedded UI's when unset.")
    codec_decode_unscoped: bool = Field(
        False, description="Let /codec decrypt payloads written before tenants had keys of their own (they name "
                           "no tenant): for a single-tenant deployment upgrading; off, they stay ciphertext there.")

    # --- Abuse limits ---
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per principal per minute.")
    # A secret: the URL may carry the password (redis://:password@host:6379/0), so it is never logged.
    redis_url: SecretStr | None = Field(
        None, description="Redis the API rate limit and the LLM budgets count in, shared by every process that "
                          "names it; unset: each process counts on its own.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted.")
    llm_daily_spend_cap_usd: float | None = Field(
        50.0, ge=0, description="Per tenant and UTC day; beyond it steps go to human review. `none`: no cap."
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    namespace: str = "default"
    # Extra importable packages scanned for workflow modules, beside the built-in `workflows`.
    workflow_packages: list[str] = Field(default_factory=list)
    definitions_dir: Path | None = Field(
        None, description="A folder of declarative workflow definitions (*.yaml), beside the shipped ones.")
    http_endpoints: dict[str, Annotated[str, Field(pattern=r"^https?://")]] = Field(
        default_factory=dict, description="Named base URLs a definition's http steps call by `endpoint`, so "
                                          "definitions name a service and each deployment says where it is.")
    # Where artifacts and the audit log are kept: files in the data dir (one host), or an S3-compatible
    # bucket every API and worker host shares (docs/configuration.md). Credentials: the standard AWS chain.
    object_store: Literal["file", "s3"] = "file"
    s3_bucket: str | None = Field(None, description="With object_store=s3: the bucket (it must exist).")
    s3_prefix: str = Field("", pattern=r"^([A-Za-z0-9_.-]+/)*$", description="Keys start with this, e.g. steward/.")
    s3_endpoint_url: str | None = Field(None, pattern=r"^https?://", description="MinIO, Ceph, R2: the endpoint.")
    s3_region: str | None = None
    s3_server_side_encryption: Literal["AES256", "aws:kms"] | None = Field(
        "AES256", description="The server's encryption of every object, on top of Steward's own; none to leave it off.")
    s3_kms_key_id: str | None = None
    audit_signing_key_file: Path | None = Field(
        None, description="The Ed25519 key (PEM, mode 0600) that signs the audit log's heads; made on first use. "
                          "Default: audit-signing-key in the data dir.")
    api_keys_file: Path | None = Field(
        None, description="The API keys' file (hashes only, mode 0600): every API host must read the same one, on a "
                          "shared volume. Default: api-keys.json in the data dir.")
    s3_audit_lock_days: int | None = Field(None, ge=1, le=36500, description="Object lock (compliance mode) on "
                                           "every audit entry for this many days; the bucket needs object lock.")
    worker_grace_s: float = Field(
        30.0, ge=0, description="How long a stopping worker lets running activities finish."
    )
    cpu_workers: int | None = Field(
        None, ge=1, le=64,
        description="Processes that run CPU-bound activities (PDF rendering); one per core but one when unset.",
    )
    worker_task_queue_activities_per_second: float | None = Field(
        None, gt=0, description="Server-enforced cap on a task queue's activity rate, across all workers."
    )
    dev_tenant: str = "acme"

    # --- The LLM layer (docs/llm.md) ---
    llm_provider: Literal["auto", "openai", "offline"] = Field(
        "auto", description="auto: openai when an endpoint or key is configured, else offline."
    )
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("STEWARD_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_api_key_file: Path | None = Field(None, description="A file (mode 0600) holding the key.")
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_output_mode: Literal["json_schema", "json_object", "prompt"] = "json_schema"
    llm_max_output_tokens: int = Field(1200, ge=16)
    llm_requests_per_minute: int = Field(60, ge=1)
    llm_tokens_per_minute: int = Field(200_000, ge=1)
    llm_prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_LLM_PRICES))
    llm_output_policy: Path | None = Field(None, description="Output policy YAML; the shipped one when unset.")
    sanctioned_countries: list[str] = Field(default_factory=lambda: list(DEFAULT_SANCTIONED_COUNTRIES))

    # --- Compliance reviews (docs/workflows/compliance-documentation.md) ---
    high_risk_countries: list[str] = Field(default_factory=lambda: list(DEFAULT_HIGH_RISK_COUNTRIES))
    compliance_confidence_threshold: float = Field(
        0.7, ge=0, le=1, description="A classification less confident than this goes to a person."
    )

    # --- Notifications (signed webhooks, Standard Webhooks) ---
    notify_webhook_url: str | None = Field(None, description="Also notified of every run's outcome.")
    notify_webhook_secret: SecretStr | None = Field(
        None, description="whsec_... signing secret; generated into the data dir when unset."
    )
    notify_allow_private_networks: bool = Field(
        False, description="Allow webhook targets on loopback/private addresses (development only)."
    )
    # --- Events: streams and webhook subscriptions (docs/events.md) ---
    events_max_streams_per_tenant: int = Field(
        100, ge=1, description="Event streams a tenant may hold open at once (per API process); beyond it 429.")
    events_heartbeat_s: float = Field(
        15.0, gt=0, description="Seconds between keep-alive comments on a quiet event stream, for proxies.")
    subscription_secret_grace_hours: float = Field(
        24.0, ge=0, description="After a secret rotation, how long the old secret still signs beside the new.")
    # Slack (or Mattermost) incoming webhook: its URL is the credential, so it is a secret.
    slack_webhook_url: SecretStr | None = Field(None, description="Incoming webhook URL for the slack channel.")
    # E-mail over SMTP.
    smtp_host: str | None = Field(
        None, description="SMTP relay for the email channel; unset: e-mail goes to a Maildir under the data dir.")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (submission, 587), tls (implicit TLS, 465), or none (a local relay)."
    )
    smtp_from: str = Field("steward@localhost", description="The From address of every e-mail.")

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.object_store == "s3" and not self.s3_bucket:
            raise ValueError("STEWARD_OBJECT_STORE=s3 needs STEWARD_S3_BUCKET")
        return self

    @field_validator("smtp_security", mode="before")
    @classmethod
    def _none_is_a_security_mode(cls, value: object) -> object:
        # env_parse_none_str turns STEWARD_SMTP_SECURITY=none into None before this field sees it.
        return "none" if value is None else value

    smtp_username: str | None = None
    smtp_password_file: Path | None = Field(None, description="A file (mode 0600) holding the SMTP password.")
    smtp_ca_file: Path | None = Field(None, description="CA bundle to verify the relay with, instead of the system's.")
    smtp_timeout_s: float = Field(20.0, gt=0)
    oncall_email: str | None = Field(None, description="Who the default incident route pages by e-mail.")
    incident_routing: Path | None = Field(None, description="Incident routing YAML; the shipped one when unset.")
    public_url: str | None = Field(
        None, description="The API's address as people reach it, for links in pages and e-mails; the API's own when unset."
    )

    # --- Connectors: the systems customer onboarding provisions (docs/connectors.md) ---
    # auto: the remote implementation when its address is configured, else the embedded one (one
    # SQLite database under the data dir), so `make up` onboards customers with no outside system.
    crm_connector: Literal["auto", "embedded", "http"] = "auto"
    crm_url: str | None = Field(None, description="Base URL of the CRM's JSON-over-HTTP API.")
    crm_token: SecretStr | None = Field(None, description="Bearer token for the CRM.")
    crm_token_file: Path | None = Field(None, description="A file (mode 0600) holding the CRM token.")
    identity_connector: Literal["auto", "embedded", "scim"] = "auto"
    scim_url: str | None = Field(None, description="SCIM 2.0 base URL of the identity system (…/scim/v2).")
    scim_token: SecretStr | None = Field(None, description="Bearer token for the SCIM API.")
    scim_token_file: Path | None = Field(None, description="A file (mode 0600) holding the SCIM token.")
    billing_connector: Literal["auto", "embedded", "stripe"] = "auto"
    stripe_api_key: SecretStr | None = Field(None, description="Stripe secret key (sk_...).")
    stripe_api_key_file: Path | None = Field(None, description="A file (mode 0600) holding the Stripe key.")
    stripe_api_base: str = Field("https://api.stripe.com", description="Stripe's API address (a test server's in tests).")
    billing_plans: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_BILLING_PLANS),
        description="Steward plan name → the billing system's plan (or price) id, JSON.",
    )
    billing_trial_days: int = Field(14, ge=1, le=730, description="Every subscription starts with this trial.")
    connector_timeout_s: float = Field(20.0, gt=0, description="Timeout of one request to a connector's system.")

    @property
    def link_base_url(self) -> str:
        """Where links sent to people point: STEWARD_PUBLIC_URL, else the API's address."""
        return (self.public_url or self.api_url).rstrip("/")

    def smtp_password(self) -> str | None:
        return read_secret_file(self.smtp_password_file) if self.smtp_password_file else None

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
    def operator_ui_url(self) -> str | None:
        """Where operators open the embedded Temporal UI: under the API, on the origin of its /codec,
        so payloads show decrypted once they have signed in there (api/routes/ui.py)."""
        if not self.uses_embedded_temporal:
            return None
        # A wildcard bind address is not somewhere a browser can go: loopback reaches it.
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        return f"http://{host}:{self.api_port}/ui/"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def worker_metrics_url(self) -> str | None:
        if self.worker_metrics_port is None:
            return None
        return f"http://{self.worker_metrics_host}:{self.worker_metrics_port}/metrics"

    @property
    def audit_dir(self) -> Path:
        """The audit log: per tenant, hash-chained entries and signed chain heads (activities/audit/)."""
        return self.data_dir / "audit"

    @property
    def api_keys_path(self) -> Path:
        return self.api_keys_file or self.data_dir / API_KEYS_FILE

    @property
    def audit_signing_key_path(self) -> Path:
        """Every worker signs one tenant's chain heads with the same key: on several hosts, point
        STEWARD_AUDIT_SIGNING_KEY_FILE at one file (a mounted secret) rather than each data dir's."""
        return self.audit_signing_key_file or self.data_dir / AUDIT_SIGNING_KEY_FILE

    @property
    def definition_dirs(self) -> list[Path]:
        """Where declarative definitions are read from: the shipped examples, then STEWARD_DEFINITIONS_DIR."""
        shipped = Path(__file__).resolve().parents[1] / "definitions"
        return [d for d in (shipped, self.definitions_dir) if d is not None]

    @property
    def subscriptions_db_path(self) -> Path:
        """Webhook subscriptions, their secrets (encrypted) and their delivery log (activities/events/)."""
        return self.data_dir / "subscriptions.db"

    @property
    def font_cache_dir(self) -> Path:
        """Static fonts made from the packaged variable fonts, once (activities/reports/fonts.py)."""
        return self.font_cache or self.data_dir / "fonts"

    def webhook_signing_secret(self) -> str:
        """The whsec_ secret: STEWARD_NOTIFY_WEBHOOK_SECRET, else the data dir's, created on first use."""
        if self.notify_webhook_secret is not None:
            return self.notify_webhook_secret.get_secret_value()
        return read_or_create_secret_file(self.data_dir / WEBHOOK_SECRET_FILE, webhook_secret)

    @property
    def llm_provider_in_use(self) -> Literal["openai", "offline"]:
        if self.llm_provider != "auto":
            return self.llm_provider
        configured = self.llm_base_url or self.llm_api_key or self.llm_api_key_file
        return "openai" if configured else "offline"

    def llm_api_key_value(self) -> str | None:
        return _secret(self.llm_api_key, self.llm_api_key_file)

    @property
    def crm_connector_in_use(self) -> Literal["embedded", "http"]:
        if self.crm_connector != "auto":
            return self.crm_connector
        return "http" if self.crm_url else "embedded"

    @property
    def identity_connector_in_use(self) -> Literal["embedded", "scim"]:
        if self.identity_connector != "auto":
            return self.identity_connector
        return "scim" if self.scim_url else "embedded"

    @property
    def billing_connector_in_use(self) -> Literal["embedded", "stripe"]:
        if self.billing_connector != "auto":
            return self.billing_connector
        return "stripe" if self.stripe_api_key or self.stripe_api_key_file else "embedded"

    def crm_token_value(self) -> str | None:
        return _secret(self.crm_token, self.crm_token_file)

    def scim_token_value(self) -> str | None:
        return _secret(self.scim_token, self.scim_token_file)

    def stripe_api_key_value(self) -> str | None:
        return _secret(self.stripe_api_key, self.stripe_api_key_file)

    @property
    def connectors_db_path(self) -> Path:
        """The embedded connectors' database: accounts, users and subscriptions."""
        return self.data_dir / "connectors.db"

    @property
    def mail_dir(self) -> Path:
        """Where e-mail goes when no SMTP relay is configured: a Maildir a new user can open."""
        return self.data_dir / "mail"

    def jwt_signing_secret(self) -> str:
        """The HS256 secret: STEWARD_JWT_SECRET, else the data dir's file, created on first use."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return read_or_create_secret_file(self.data_dir / JWT_SECRET_FILE)


def _secret(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret from its file (mode 0600) when one is named, else from the environment."""
    if file is not None:
        return read_secret_file(file)
    return value.get_secret_value() if value is not None else None


def webhook_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def read_or_create_secret_file(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
    """Return the secret stored at `path`, creating it (mode 0600) with `make()` if it does not exist.

    The secret is written to a private temporary file first and then hard-linked into place, which
    fails if the file already exists: two processes starting at once agree on one secret, and
    neither can read a file the other has created but not yet written.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return read_secret_file(path)

    def write(temporary: str) -> None:
        with open(temporary, "w") as file:
            file.write(make())
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, SECRET_FILE_MODE)

    create_once(path, write)
    return read_secret_file(path)


def read_secret_file(path: Path) -> str:
    """Read a secret, refusing a file that other users could read too."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} has mode {mode:o}; a secret file must be 0600 (chmod 600 {path})")
    return path.read_text().strip()
