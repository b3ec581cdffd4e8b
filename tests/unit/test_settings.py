"""Settings: defaults from config/, overridden by PRESTO_* variables, validated with clear names."""

from __future__ import annotations

from pathlib import Path

import pytest

from presto_deck.settings import Settings, SettingsError, load_settings

_REQUIRED = {
    "PRESTO_DATABASE_URL": "postgresql://presto:pw@db.internal:5432/presto_deck",
    "PRESTO_REDIS_URL": "redis://cache.internal:6379/3",
}


def _load(**environ: str) -> Settings:
    return load_settings(environ={**_REQUIRED, **environ})


def test_the_defaults_load_with_only_the_required_urls() -> None:
    settings = _load()

    assert settings.database_url == _REQUIRED["PRESTO_DATABASE_URL"]
    assert settings.redis_url == _REQUIRED["PRESTO_REDIS_URL"]
    assert settings.jwt_secret is None
    assert settings.jwt_algorithms == ["HS256"]
    assert (settings.jwt_audience, settings.jwt_issuer, settings.jwt_public_key) == (None,) * 3
    assert settings.llm_model == "offline"
    assert (settings.llm_timeout_seconds, settings.llm_max_attempts) == (60, 4)
    assert settings.llm_structured_output == "function_calling"
    assert settings.offline_slide_delay_ms == 300
    assert settings.ws_heartbeat_seconds == 15
    assert settings.log_format == "json"


def test_the_process_environment_is_not_read_when_an_environ_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRESTO_WS_HEARTBEAT_SECONDS", "99")

    assert _load().ws_heartbeat_seconds == 15


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PRESTO_WS_HEARTBEAT_SECONDS", "7")
    monkeypatch.delenv("PRESTO_CONFIG", raising=False)

    assert load_settings().ws_heartbeat_seconds == 7


def test_an_environment_variable_overrides_the_default_with_its_type() -> None:
    settings = _load(PRESTO_WS_HEARTBEAT_SECONDS="5", PRESTO_LLM_MAX_ATTEMPTS="2")

    assert settings.ws_heartbeat_seconds == 5.0
    assert isinstance(settings.ws_heartbeat_seconds, float)
    assert settings.llm_max_attempts == 2
    assert isinstance(settings.llm_max_attempts, int)


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("PRESTO_LLM_MODEL", "openai:gpt-4o-mini", "llm_model", "openai:gpt-4o-mini"),
        (
            "PRESTO_LLM_BASE_URL",
            "http://127.0.0.1:8080/v1",
            "llm_base_url",
            "http://127.0.0.1:8080/v1",
        ),
        ("PRESTO_LLM_TIMEOUT_SECONDS", "2.5", "llm_timeout_seconds", 2.5),
        ("PRESTO_LLM_STRUCTURED_OUTPUT", "json_schema", "llm_structured_output", "json_schema"),
        ("PRESTO_OFFLINE_SLIDE_DELAY_MS", "0", "offline_slide_delay_ms", 0),
        ("PRESTO_LOG_FORMAT", "text", "log_format", "text"),
        ("PRESTO_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
        ("PRESTO_JWT_AUDIENCE", "presto-deck", "jwt_audience", "presto-deck"),
        (
            "PRESTO_JWT_ISSUER",
            "https://auth.example.com/",
            "jwt_issuer",
            "https://auth.example.com/",
        ),
        ("PRESTO_JWT_SECRET", "s3cret", "jwt_secret", "s3cret"),
    ],
)
def test_each_contract_variable_sets_its_setting(
    variable: str, value: str, field: str, expected: object
) -> None:
    assert getattr(_load(**{variable: value}), field) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("RS256", ["RS256"]),
        ("HS256,RS256", ["HS256", "RS256"]),
        (" HS256 , ES256 ,", ["HS256", "ES256"]),
    ],
)
def test_jwt_algorithms_is_a_comma_separated_list(value: str, expected: list[str]) -> None:
    assert _load(PRESTO_JWT_ALGORITHMS=value).jwt_algorithms == expected


def test_ws_allowed_origins_is_a_comma_separated_list() -> None:
    settings = _load(PRESTO_WS_ALLOWED_ORIGINS="https://a.example, https://b.example")

    assert settings.ws_allowed_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_variable_counts_as_unset(empty: str) -> None:
    settings = _load(
        PRESTO_WS_HEARTBEAT_SECONDS=empty, PRESTO_JWT_ALGORITHMS=empty, PRESTO_JWT_SECRET=empty
    )

    assert settings.ws_heartbeat_seconds == 15
    assert settings.jwt_algorithms == ["HS256"]
    assert settings.jwt_secret is None


def test_variables_that_name_no_setting_are_ignored() -> None:
    settings = _load(PRESTO_NOT_A_SETTING="x", OTHER_WS_HEARTBEAT_SECONDS="1")

    assert settings.ws_heartbeat_seconds == 15


@pytest.mark.parametrize("variable", ["PRESTO_DATABASE_URL", "PRESTO_REDIS_URL"])
@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_required_url_is_an_error_naming_the_variable(
    variable: str, value: str | None
) -> None:
    environ = dict(_REQUIRED)
    if value is None:
        del environ[variable]
    else:
        environ[variable] = value

    with pytest.raises(SettingsError, match=variable):
        load_settings(environ=environ)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRESTO_WS_HEARTBEAT_SECONDS", "abc"),
        ("PRESTO_WS_HEARTBEAT_SECONDS", "0"),
        ("PRESTO_WS_HEARTBEAT_SECONDS", "-1"),
        ("PRESTO_LLM_TIMEOUT_SECONDS", "0"),
        ("PRESTO_LLM_MAX_ATTEMPTS", "2.5"),
        ("PRESTO_LLM_MAX_ATTEMPTS", "0"),
        ("PRESTO_LLM_STRUCTURED_OUTPUT", "xml_mode"),
        ("PRESTO_OFFLINE_SLIDE_DELAY_MS", "-1"),
        ("PRESTO_OFFLINE_SLIDE_DELAY_MS", "fast"),
        ("PRESTO_LOG_FORMAT", "xml"),
        ("PRESTO_LOG_LEVEL", "LOUD"),
        ("PRESTO_WORKER_LEASE_SECONDS", "0"),
        ("PRESTO_WORKER_MAX_JOBS", "0"),
        ("PRESTO_STREAM_MAXLEN", "0"),
    ],
)
def test_an_invalid_value_is_an_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        _load(**{variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRESTO_DATABASE_URL", "mysql://u@h/db"),
        ("PRESTO_DATABASE_URL", "sqlite:///deck.db"),
        ("PRESTO_DATABASE_URL", "db.internal:5432"),
        ("PRESTO_REDIS_URL", "http://cache.internal:6379"),
        ("PRESTO_REDIS_URL", "cache.internal:6379"),
    ],
)
def test_a_url_with_the_wrong_scheme_is_an_error_naming_the_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=variable):
        _load(**{variable: value})


@pytest.mark.parametrize("value", ["none", "None", "HS256,none", "NONE,RS256", ","])
def test_jwt_algorithm_none_or_no_algorithm_at_all_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="PRESTO_JWT_ALGORITHMS"):
        _load(PRESTO_JWT_ALGORITHMS=value)


@pytest.mark.parametrize("url", ["rediss://cache:6380/0", "unix:///run/redis.sock?db=2"])
def test_tls_and_unix_socket_redis_urls_are_accepted(url: str) -> None:
    assert _load(PRESTO_REDIS_URL=url).redis_url == url


def test_a_postgresql_url_is_given_the_psycopg_driver_for_sqlalchemy() -> None:
    settings = _load(PRESTO_DATABASE_URL="postgresql://u:p@h:5432/db")

    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@h:5432/db"


def test_a_postgresql_psycopg_url_is_used_as_it_is() -> None:
    settings = _load(PRESTO_DATABASE_URL="postgresql+psycopg://u:p@h:5432/db")

    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@h:5432/db"


def test_a_presto_config_file_overrides_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "presto.toml"
    config.write_text('ws_heartbeat_seconds = 3\njwt_algorithms = ["RS256"]\nlog_format = "text"\n')

    settings = _load(PRESTO_CONFIG=str(config))

    assert settings.ws_heartbeat_seconds == 3
    assert settings.jwt_algorithms == ["RS256"]
    assert settings.log_format == "text"
    assert settings.llm_max_attempts == 4  # untouched defaults stay


def test_the_environment_overrides_the_presto_config_file(tmp_path: Path) -> None:
    config = tmp_path / "presto.toml"
    config.write_text("ws_heartbeat_seconds = 3\n")

    settings = _load(PRESTO_CONFIG=str(config), PRESTO_WS_HEARTBEAT_SECONDS="9")

    assert settings.ws_heartbeat_seconds == 9


def test_a_presto_config_file_can_hold_the_required_urls(tmp_path: Path) -> None:
    config = tmp_path / "presto.toml"
    config.write_text('database_url = "postgresql://h/db"\nredis_url = "redis://h/0"\n')

    settings = load_settings(environ={"PRESTO_CONFIG": str(config)})

    assert (settings.database_url, settings.redis_url) == ("postgresql://h/db", "redis://h/0")


def test_an_unreadable_presto_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PRESTO_CONFIG"):
        _load(PRESTO_CONFIG=str(tmp_path / "missing.toml"))


def test_a_presto_config_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "presto.toml"
    config.write_text("ws_heartbeat_seconds = = 3\n")

    with pytest.raises(SettingsError, match="TOML"):
        _load(PRESTO_CONFIG=str(config))


def test_an_unknown_key_in_a_presto_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "presto.toml"
    config.write_text("ws_heartbeet_seconds = 3\n")

    with pytest.raises(SettingsError, match="ws_heartbeet_seconds"):
        _load(PRESTO_CONFIG=str(config))


def test_a_wrongly_typed_value_in_a_presto_config_file_names_the_variable(
    tmp_path: Path,
) -> None:
    config = tmp_path / "presto.toml"
    config.write_text('llm_max_attempts = "many"\n')

    with pytest.raises(SettingsError, match="PRESTO_LLM_MAX_ATTEMPTS"):
        _load(PRESTO_CONFIG=str(config))


def test_keyword_overrides_win_and_none_overrides_are_ignored() -> None:
    settings = load_settings(
        environ={**_REQUIRED, "PRESTO_WS_HEARTBEAT_SECONDS": "9"},
        ws_heartbeat_seconds=1,
        jwt_secret=None,
    )

    assert settings.ws_heartbeat_seconds == 1
    assert settings.jwt_secret is None


def test_serving_without_a_jwt_key_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="PRESTO_JWT_SECRET"):
        _load().require_jwt_key()


@pytest.mark.parametrize(
    "variable", ["PRESTO_JWT_SECRET", "PRESTO_JWT_PUBLIC_KEY"], ids=["secret", "public key"]
)
def test_a_secret_or_a_public_key_is_enough_to_serve(variable: str) -> None:
    _load(**{variable: "key material of thirty-two bytes"}).require_jwt_key()


def test_an_hmac_secret_under_32_bytes_is_refused_except_on_a_developers_machine() -> None:
    short = _load(PRESTO_JWT_SECRET="x" * 31)

    with pytest.raises(SettingsError) as refused:
        short.require_jwt_key()
    short.require_jwt_key(strong=False)  # what `dev` asks

    assert str(refused.value) == (
        "PRESTO_JWT_SECRET is 31 bytes; an HS256 secret needs at least 32 "
        "(make one with: openssl rand -hex 32)"
    )
    _load(PRESTO_JWT_SECRET="é" * 16).require_jwt_key()  # bytes, not characters


def test_a_command_that_reaches_no_server_needs_no_server_urls() -> None:
    settings = load_settings(environ={"PRESTO_JWT_SECRET": "x" * 32}, needs=())

    assert settings.jwt_secret == "x" * 32
    with pytest.raises(SettingsError, match="PRESTO_DATABASE_URL is not set"):
        load_settings(environ={"PRESTO_JWT_SECRET": "x" * 32})
    migrating = load_settings(
        environ={"PRESTO_DATABASE_URL": "postgresql://db/x"}, needs=("database_url",)
    )
    assert migrating.database_url == "postgresql://db/x"


def test_the_repr_of_the_settings_hides_secrets_and_credentials() -> None:
    shown = repr(_load(PRESTO_JWT_SECRET="jwt-s3cret", PRESTO_LLM_API_KEY="sk-live-123"))

    for secret in ("jwt-s3cret", "sk-live-123", "presto:pw", "cache.internal"):
        assert secret not in shown
    assert "ws_heartbeat_seconds=15" in shown


@pytest.mark.parametrize("model", ["gpt4", "openai:", ":gpt-4o", " : "])
def test_a_model_without_provider_and_name_is_refused_showing_the_form(model: str) -> None:
    with pytest.raises(SettingsError, match="expected offline or provider:model"):
        _load(PRESTO_LLM_MODEL=model)
