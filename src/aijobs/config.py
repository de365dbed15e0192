"""Configuration, read once at an entry point and passed down (no module-level globals).

Values come from the environment, then `.env` and `.env.local` (the seed's file), with the
environment winning. An empty (or blank) value means unset: the default applies, so the
`OPENAI_API_KEY=` of a .env template keeps the offline provider, and an empty variable in the
environment still overrides a file's value. A bad value is refused at start: `load_settings`
turns pydantic's errors into one message per variable, naming it and the reason.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "gpt-5-nano"

#: USD per million (input, output) tokens.
Prices = tuple[Decimal, Decimal]

#: Settings the database takes as an SQL `integer` stay within it: past it every call fails.
PG_INT_MAX = 2_147_483_647
#: HS256 keys shorter than the hash (RFC 7518 3.2) can be guessed offline from one token;
#: the service key is a bearer secret held to the same length.
MIN_SECRET_BYTES = 32
#: A job's attempts are at most 100 (the aijobs.job_max_attempts domain); it runs once
#: and then up to MAX_RETRIES more times.
MAX_ATTEMPTS = 100
#: TENANT_CLAIM: a dot-separated path of up to 4 names into the JWT's claims, as the
#: database's check on `settings.tenant_claim` bounds it.
TENANT_CLAIM_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$")


class ConfigError(Exception):
    """Raised when the environment holds a value aijobs cannot run with."""


class Settings(BaseSettings):
    """Every knob aijobs reads. Env names are the field names upper-cased."""

    model_config = SettingsConfigDict(
        env_file=(".env", ".env.local"),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # NaN and infinity fit no setting: unbounded floats (RATE_LIMIT_MAX_WAIT_SECONDS) took them.
        allow_inf_nan=False,
    )

    # Database. Unset means: start the embedded PostgreSQL under ./.aijobs/pgdata.
    database_url: str | None = None
    embedded_data_dir: str = ".aijobs/pgdata"
    db_pool_size: int = Field(default=4, ge=1, le=100)
    # How long an API request waits for a pooled connection before a 503 (database out of reach).
    db_acquire_timeout_seconds: float = Field(default=2.0, gt=0, le=300)
    # How long a starting worker waits for a database that does not answer (a restart).
    db_start_timeout_seconds: float = Field(default=300.0, gt=0, le=86400)
    # What DATABASE_URL reaches: "session" (PostgreSQL itself, or a session-mode pooler) or
    # "transaction" (PgBouncer or Supavisor in transaction mode), where a server connection
    # is lent per transaction, so no server-side prepared statement and no LISTEN survive.
    database_pool_mode: Literal["session", "transaction"] = "session"
    # A direct or session-mode URL for the LISTEN connections. Unset: DATABASE_URL in session
    # mode; in transaction mode nobody listens, and workers and streams poll.
    listen_database_url: str | None = None

    # Worker (the seed's names and defaults).
    polling_interval: int = Field(default=5000, ge=10, le=3_600_000, description="ms between polls")
    max_retries: int = Field(default=3, ge=0, le=MAX_ATTEMPTS - 1)
    worker_concurrency: int = Field(default=10, ge=1, le=1000)
    lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=600)
    shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=3600)
    # Caps every job type's own time limit (None: each type's limit applies).
    job_timeout_seconds: float | None = Field(default=None, gt=0, le=86400)
    retry_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=600.0, gt=0, le=86400)

    # LLM providers.
    # auto | openai | offline | "package.module:Factory" (any callable returning a Provider).
    llm_provider: str = "auto"
    llm_api: Literal["responses", "chat"] | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = DEFAULT_MODEL
    openai_base_url: str | None = None
    openai_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    openai_max_output_tokens: int = Field(default=2048, ge=16, le=128_000)
    openai_reasoning_effort: Literal["minimal", "low", "medium", "high", "none"] = "minimal"
    openai_rpm: int | None = Field(default=None, ge=1, le=PG_INT_MAX)
    openai_tpm: int | None = Field(default=None, ge=1, le=PG_INT_MAX)
    rate_limit_max_wait_seconds: float = Field(default=3600.0, ge=0)
    # The window OPENAI_RPM / OPENAI_TPM count over: a minute, shorter only in tests and demos.
    rate_limit_window_seconds: float = Field(default=60.0, gt=0, le=3600)
    # How often one worker probes a provider paused for its configuration (a wrong key, an
    # unknown model, nothing at its base URL) to find out whether it was fixed.
    provider_probe_seconds: float = Field(default=30.0, gt=0, le=3600)
    # USD per 1M tokens as "model=input:output,model2=input:output"; empty uses the built-in table.
    openai_prices: str = ""

    # API.
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_audience: str = "authenticated"
    jwt_issuer: str | None = None
    service_role_key: SecretStr | None = None
    cors_origins: str = ""
    max_body_bytes: int = Field(default=65536, ge=1024)
    # The body of a batch or an import (up to 10,000 jobs): room for ~1.6 KB per job.
    max_batch_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024**3)
    # 0: no quota. Users take turns for the workers (fair share), so bulk work does not need
    # it to keep one user from starving the others.
    max_jobs_in_flight_per_user: int = Field(default=100, ge=0, le=PG_INT_MAX)
    # The most jobs of one tenant running at once across all workers (0: no limit); a tenant
    # may have its own (`aijobs accounts limit`). Jobs over it wait, and other tenants' run.
    max_running_per_tenant: int = Field(default=0, ge=0, le=PG_INT_MAX)
    # The JWT claim naming a user's tenant (`org_id`, `app_metadata.org_id`): the users of one
    # organisation then share its fair share and its limit. Unset, or absent from a token:
    # the user is the tenant. Written by `aijobs migrate` for direct (Supabase RPC) callers.
    tenant_claim: str | None = None
    # Open SSE streams and long polls one user may hold in one API process (each is a queue).
    max_streams_per_user: int = Field(default=5, ge=1, le=10_000)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)

    # Webhooks. Loopback, private and link-local targets are refused unless allowed here
    # (tests, or a deployment whose receivers are on its own network).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # First retry after about this long, each next one 4 times later (capped at 4 hours),
    # until WEBHOOK_RETRY_WINDOW_SECONDS after the job ended; then the delivery fails.
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    webhook_retry_window_seconds: float = Field(default=86400.0, gt=0, le=30 * 86400)
    webhook_concurrency: int = Field(default=8, ge=1, le=1000)
    max_webhooks_per_user: int = Field(default=10, ge=1, le=1000)

    # Maintenance.
    # At most a century: "keep everything", while now() minus it stays a valid timestamp.
    # At least a day: a finished job's idempotency key lasts as long as the job (Stripe keeps
    # keys 24 hours), and a repeat after the job is pruned creates and charges a new one.
    retention_days: float = Field(default=7.0, ge=1, le=36_500)
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    maintenance_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    # When set, the API's /metrics asks for `Authorization: Bearer <METRICS_TOKEN>` (401 without).
    metrics_token: SecretStr | None = None
    # How often the maintenance leader samples queue depth for the dashboard's chart: often
    # enough that a burst drained in seconds still shows.
    queue_sample_seconds: float = Field(default=1.0, gt=0, le=3600)
    # Serve Prometheus /metrics from the worker on this port (None: don't).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # Event loop for `aijobs worker`, `aijobs api` and `aijobs dev` (see aijobs.eventloop).
    event_loop: Literal["asyncio", "uvloop"] = "uvloop"

    # Your own job types: comma-separated import paths (`myapp.jobs`, `myapp.jobs:translate`),
    # loaded with the built-ins and the `aijobs.job_types` entry points (docs/job-types.md).
    aijobs_job_types: str = ""

    # Logging.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object, info: ValidationInfo) -> object:
        # Not pydantic-settings' env_ignore_empty: that skips the variable, so an empty
        # OPENAI_API_KEY in the environment would let a key in .env through. Nor
        # PydanticUseDefault: BaseSettings validates defaults too, and "" is one.
        if isinstance(value, str) and not value.strip() and info.field_name is not None:
            return cls.model_fields[info.field_name].default
        return value

    @field_validator("database_url", "listen_database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("postgres://", "postgresql://")) and "=" not in value:
            raise ValueError("must be a postgresql:// URL or a libpq key=value string")
        return value

    @field_validator("jwt_secret", "service_role_key", "metrics_token")
    @classmethod
    def _check_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes (generate one: openssl rand -base64 32)"
            )
        return value

    @field_validator("tenant_claim")
    @classmethod
    def _check_tenant_claim(cls, value: str | None) -> str | None:
        if value is not None and not TENANT_CLAIM_PATTERN.fullmatch(value):
            raise ValueError(
                "must be a claim's name or a dot-separated path to it (up to 4 names of letters, "
                "digits and _, each at most 64 long), such as org_id or app_metadata.org_id"
            )
        return value

    @field_validator("llm_provider")
    @classmethod
    def _check_provider(cls, value: str) -> str:
        if value in ("auto", "openai", "offline") or ":" in value:
            return value
        raise ValueError("must be auto, openai, offline, or an import path 'package.module:Factory'")

    @field_validator("openai_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        # Caught at start: the SDK refuses such a URL only at each call, which failed every
        # job of the queue one attempt after another.
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (reading it checks it)
        except ValueError as exc:
            raise ValueError(f"is not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, such as https://api.openai.com/v1")
        return value

    @field_validator("openai_prices")
    @classmethod
    def _check_prices(cls, value: str) -> str:
        parse_prices(value)  # a ValueError names the bad item
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                f"HEARTBEAT_SECONDS ({self.heartbeat_seconds}) must be below LEASE_SECONDS "
                f"({self.lease_seconds}), or every lease expires between two heartbeats"
            )
        return self

    @model_validator(mode="after")
    def _check_backoff(self) -> Settings:
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError(
                f"RETRY_BASE_SECONDS ({self.retry_base_seconds:g}) must not exceed RETRY_MAX_SECONDS "
                f"({self.retry_max_seconds:g}): the backoff starts at the base and is capped at the max"
            )
        return self

    @property
    def prepared_statements(self) -> bool:
        """Whether connections may prepare statements on the server (not through a
        transaction-mode pooler, which may run the next execution on another backend)."""
        return self.database_pool_mode == "session"

    def listen_url(self, database_url: str) -> str | None:
        """Where LISTEN connects for a process using `database_url`; None: poll alone."""
        if self.listen_database_url is not None:
            return self.listen_database_url
        return database_url if self.database_pool_mode == "session" else None

    @property
    def in_flight_quota(self) -> int | None:
        """The per-user quota on jobs in flight, None when there is none."""
        return self.max_jobs_in_flight_per_user or None

    @property
    def running_limit(self) -> int | None:
        """The deployment's limit on one tenant's running jobs, None when there is none."""
        return self.max_running_per_tenant or None

    @property
    def polling_seconds(self) -> float:
        return self.polling_interval / 1000.0

    @property
    def max_attempts(self) -> int:
        """A job runs once, then up to MAX_RETRIES more times."""
        return self.max_retries + 1

    def price_table(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Parse OPENAI_PRICES into {model: (input_usd_per_mtok, output_usd_per_mtok)}."""
        return parse_prices(self.openai_prices)


def load_settings(**overrides: object) -> Settings:
    """Build Settings or raise ConfigError naming each bad variable and why."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "configuration"
            # A rule relating variables (no loc) has every value as its input, secrets included.
            shown = "" if not err["loc"] or _is_secret(name) else f" (got {err.get('input')!r})"
            lines.append(f"{name}: {err['msg']}{shown}")
        if len(lines) == 1:
            raise ConfigError(f"invalid configuration: {lines[0]}") from None
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def _is_secret(name: str) -> bool:
    """Never echo keys, secrets or URLs (which may carry a password) back in an error."""
    return any(word in name for word in ("KEY", "SECRET", "URL", "PASSWORD", "TOKEN"))


def parse_prices(text: str) -> dict[str, Prices]:
    """Parse "model=input:output,…" into a table; raises ValueError naming the bad item."""
    table: dict[str, Prices] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, sep, prices = item.partition("=")
        inp, sep2, out = prices.partition(":")
        try:
            if not (sep and sep2 and model.strip()):
                raise ValueError
            pair = (Decimal(inp.strip()), Decimal(out.strip()))
        except (ValueError, ArithmeticError):
            raise ValueError(f"{item!r} is not model=input:output (USD per 1M tokens)") from None
        if not all(p.is_finite() for p in pair) or pair[0] < 0 or pair[1] < 0:
            raise ValueError(f"{item!r}: prices must be finite and non-negative")
        table[model.strip()] = pair
    return table
