"""Configuration: the seed's defaults, and bad values refused with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from aijobs.config import ConfigError, load_settings
from aijobs.queue.retry import RetryPolicy


def test_defaults_are_the_seeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("POLLING_INTERVAL", "MAX_RETRIES", "OPENAI_MODEL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert (s.polling_interval, s.max_retries, s.openai_model) == (5000, 3, "gpt-5-nano")
    assert s.max_attempts == 4 and s.database_url is None


def test_env_local_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POLLING_INTERVAL", raising=False)
    (tmp_path / ".env.local").write_text("POLLING_INTERVAL=750\n")
    assert load_settings().polling_interval == 750


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("POLLING_INTERVAL", "soon", "valid integer"),
        ("POLLING_INTERVAL", "0", "greater than or equal to 10"),
        ("MAX_RETRIES", "-1", "greater than or equal to 0"),
        ("WORKER_CONCURRENCY", "0", "greater than or equal to 1"),
        ("DATABASE_URL", "mysql://x", "postgresql://"),
        ("LLM_PROVIDER", "magic", "auto, openai, offline"),
        # Past these the database refuses every call that takes them (a 500 per request).
        ("MAX_RETRIES", "100", "less than or equal to 99"),  # 101 attempts; the domain allows 100
        ("MAX_JOBS_IN_FLIGHT_PER_USER", "2147483648", "less than or equal to 2147483647"),
        ("OPENAI_RPM", "10000000000", "less than or equal to 2147483647"),
        ("OPENAI_TPM", "2147483648", "less than or equal to 2147483647"),
        ("RETENTION_DAYS", "1e9", "less than or equal to 36500"),
        ("RETENTION_DAYS", "inf", "finite number"),
        # A job's idempotency key lasts as long as the job: a repeat within a day must not charge.
        ("RETENTION_DAYS", "0.5", "greater than or equal to 1"),
        ("RATE_LIMIT_MAX_WAIT_SECONDS", "inf", "finite number"),
        ("RATE_LIMIT_MAX_WAIT_SECONDS", "nan", "finite number"),
        ("MAX_STREAMS_PER_USER", "0", "greater than or equal to 1"),
        ("MAX_STREAMS_PER_USER", "10001", "less than or equal to 10000"),
        # The SDK would refuse these only at each call: every job failing, one after another.
        ("OPENAI_BASE_URL", "api.openai.com/v1", "http(s) URL with a host"),
        ("OPENAI_BASE_URL", "ftp://models.internal/v1", "http(s) URL with a host"),
        ("OPENAI_BASE_URL", "http://[::1/v1", "is not a URL"),
        ("OPENAI_BASE_URL", "http://localhost:99999/v1", "is not a URL"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, reason: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert name in str(refused.value) and reason in str(refused.value)


def test_heartbeat_must_be_shorter_than_the_lease(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEASE_SECONDS", "5")
    monkeypatch.setenv("HEARTBEAT_SECONDS", "5")
    with pytest.raises(ConfigError, match="HEARTBEAT_SECONDS"):
        load_settings()


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@db")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "hunter2" not in str(refused.value)


def test_an_empty_value_means_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`OPENAI_API_KEY=` (a .env template's line) must not select OpenAI with an empty key."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=\nOPENAI_BASE_URL=\nOPENAI_MODEL=\nMAX_RETRIES=\n")
    monkeypatch.setenv("JWT_SECRET", "")
    monkeypatch.setenv("LLM_API", "  ")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    s = load_settings()
    assert s.openai_api_key is None and s.openai_base_url is None and s.jwt_secret is None
    assert (s.openai_model, s.max_retries, s.llm_api) == ("gpt-5-nano", 3, None)
    assert load_settings(openai_api_key="", openai_base_url=" ").openai_api_key is None


def test_an_empty_variable_still_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`OPENAI_API_KEY= aijobs worker` runs offline although .env holds a key: the environment wins."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-the-file\n")
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert load_settings().openai_api_key is None


def test_the_largest_bounded_values_are_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAX_RETRIES", "99")
    monkeypatch.setenv("MAX_JOBS_IN_FLIGHT_PER_USER", "2147483647")
    monkeypatch.setenv("RETENTION_DAYS", "36500")
    s = load_settings()
    assert (s.max_attempts, s.max_jobs_in_flight_per_user, s.retention_days) == (100, 2147483647, 36500)


def test_a_rule_between_variables_echoes_no_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Such an error's input is every setting: it printed the API key and the database password."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hunter2")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter3@db/aijobs")
    monkeypatch.setenv("LEASE_SECONDS", "5")
    monkeypatch.setenv("HEARTBEAT_SECONDS", "5")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "HEARTBEAT_SECONDS" in str(refused.value)
    assert "hunter2" not in str(refused.value) and "hunter3" not in str(refused.value)


def test_the_backoff_base_must_not_exceed_its_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """RetryPolicy refused it with a bare ValueError at worker start; now `load_settings` does,
    as a ConfigError naming both variables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETRY_BASE_SECONDS", "700")  # RETRY_MAX_SECONDS left at 600
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "RETRY_BASE_SECONDS (700)" in str(refused.value)
    assert "RETRY_MAX_SECONDS (600)" in str(refused.value)
    monkeypatch.setenv("RETRY_MAX_SECONDS", "700")
    settings = load_settings()
    RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)  # equal is fine


def test_where_listen_goes_for_each_pool_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_POOL_MODE", "LISTEN_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    direct, pooler = "postgresql://db:5432/app", "postgresql://pooler:6543/app"
    session = load_settings(database_url=direct)
    assert session.prepared_statements and session.listen_url(direct) == direct
    transaction = load_settings(database_url=pooler, database_pool_mode="transaction")
    assert not transaction.prepared_statements and transaction.listen_url(pooler) is None
    both = load_settings(database_url=pooler, database_pool_mode="transaction", listen_database_url=direct)
    assert both.listen_url(pooler) == direct
    with pytest.raises(ConfigError, match="DATABASE_POOL_MODE"):
        load_settings(database_pool_mode="statement")
    with pytest.raises(ConfigError, match=r"LISTEN_DATABASE_URL: .*postgresql://"):
        load_settings(listen_database_url="mysql://x")


def test_the_in_flight_quota_is_optional(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fair share keeps bulk work from starving others; the quota is a deployment's choice."""
    monkeypatch.chdir(tmp_path)
    assert load_settings().in_flight_quota == 100
    monkeypatch.setenv("MAX_JOBS_IN_FLIGHT_PER_USER", "0")
    assert load_settings().in_flight_quota is None
    monkeypatch.setenv("MAX_JOBS_IN_FLIGHT_PER_USER", "-1")
    with pytest.raises(ConfigError):
        load_settings()
