"""One typed settings object: defaults from ``config/``, overridden by ``PRESTO_*`` variables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec

ENV_PREFIX = "PRESTO_"
_SECRET_FIELDS = frozenset({"jwt_secret", "llm_api_key", "database_url", "redis_url"})


#: Durations that must be greater than zero.
_POSITIVE_FIELDS = (
    "llm_timeout_seconds",
    "ws_heartbeat_seconds",
    "worker_lease_seconds",
    "worker_sweep_seconds",
    "db_lock_timeout_seconds",
    "db_idle_transaction_timeout_seconds",
    "ws_write_timeout_seconds",
    "http_header_timeout_seconds",
)
#: Counts and sizes that must be at least one.
_AT_LEAST_ONE_FIELDS = (
    "llm_max_attempts",
    "worker_max_jobs",
    "stream_maxlen",
    "llm_max_calls_per_deck",
    "llm_concurrent_slides_per_deck",
    "llm_concurrent_slides_per_worker",
    "limit_deck_creations_per_minute",
    "limit_active_decks_per_user",
    "limit_sockets_per_user",
    "limit_sockets_total",
    "limit_frames_per_second",
    "limit_queued_edits_per_deck",
    "limit_exports_per_minute",
    "limit_theme_changes_per_minute",
    "limit_concurrent_exports",
    "ws_send_queue",
    "http_max_header_bytes",
    "http_max_body_bytes",
)


#: The shortest HMAC secret ``serve`` accepts: as long as SHA-256's output (RFC 7518, 3.2).
MIN_SECRET_BYTES = 32


class SettingsError(Exception):
    """A missing or invalid setting; the message names it as the user would set it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    database_url: str
    redis_url: str
    jwt_secret: str | None = None
    jwt_algorithms: list[str] = msgspec.field(default_factory=lambda: ["HS256"])
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_public_key: str | None = None
    llm_model: str = "offline"
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_timeout_seconds: float = 60.0
    llm_max_attempts: int = 4
    llm_structured_output: Literal["function_calling", "json_schema"] = "function_calling"
    offline_slide_delay_ms: int = 300
    ws_heartbeat_seconds: float = 15.0
    ws_allowed_origins: list[str] = msgspec.field(default_factory=list)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    worker_lease_seconds: float = 20.0
    worker_sweep_seconds: float = 10.0
    worker_max_jobs: int = 20
    stream_maxlen: int = 100000
    llm_max_calls_per_deck: int = 60
    llm_concurrent_slides_per_deck: int = 4
    llm_concurrent_slides_per_worker: int = 16
    db_lock_timeout_seconds: float = 5.0
    db_idle_transaction_timeout_seconds: float = 10.0
    limit_deck_creations_per_minute: int = 30
    limit_active_decks_per_user: int = 5
    limit_sockets_per_user: int = 50
    limit_sockets_total: int = 10000
    limit_frames_per_second: int = 20
    limit_queued_edits_per_deck: int = 20
    limit_exports_per_minute: int = 30
    limit_theme_changes_per_minute: int = 10
    limit_concurrent_exports: int = 2
    ws_send_queue: int = 100
    ws_write_timeout_seconds: float = 10.0
    http_max_header_bytes: int = 16384
    http_header_timeout_seconds: float = 10.0
    http_max_body_bytes: int = 65536
    themes_dir: str | None = None
    api_docs_page: bool = False

    def __post_init__(self) -> None:
        if not self.database_url.startswith(("postgresql://", "postgresql+psycopg://")):
            raise SettingsError(
                "PRESTO_DATABASE_URL must start with postgresql:// or postgresql+psycopg://"
            )
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("PRESTO_REDIS_URL must start with redis://, rediss:// or unix://")
        provider, _, model = self.llm_model.partition(":")
        if self.llm_model != "offline" and not (provider.strip() and model.strip()):
            raise SettingsError(
                f"PRESTO_LLM_MODEL={self.llm_model!r}: expected offline or provider:model, "
                "e.g. openai:gpt-4o-mini"
            )
        if not self.jwt_algorithms or "none" in (a.lower() for a in self.jwt_algorithms):
            raise SettingsError("PRESTO_JWT_ALGORITHMS must name at least one real algorithm")
        for name in _POSITIVE_FIELDS:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be greater than 0")
        for name in _AT_LEAST_ONE_FIELDS:
            if getattr(self, name) < 1:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be at least 1")
        if self.offline_slide_delay_ms < 0:
            raise SettingsError(f"{ENV_PREFIX}OFFLINE_SLIDE_DELAY_MS must be 0 or more")

    def __repr__(self) -> str:
        shown = (
            f"{name}={'***' if name in _SECRET_FIELDS and value else repr(value)}"
            for name, value in msgspec.structs.asdict(self).items()
        )
        return f"Settings({', '.join(shown)})"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        if self.database_url.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
        return self.database_url

    @property
    def libpq_url(self) -> str:
        """The database URL as psycopg itself (libpq) wants it."""
        return "postgresql://" + self.sqlalchemy_url.removeprefix("postgresql+psycopg://")

    def require_jwt_key(self, *, strong: bool = True) -> None:
        """Refuse to serve without a way to verify tokens, or (``strong``) with an HMAC secret
        shorter than RFC 7518 asks for (a key as long as the hash: 32 bytes for HS256)."""
        if not (self.jwt_secret or self.jwt_public_key):
            raise SettingsError(
                "PRESTO_JWT_SECRET is not set (make one with: openssl rand -hex 32), "
                "or PRESTO_JWT_PUBLIC_KEY for tokens signed elsewhere"
            )
        size = len((self.jwt_secret or "").encode())
        if strong and self.jwt_secret and size < MIN_SECRET_BYTES:
            raise SettingsError(
                f"PRESTO_JWT_SECRET is {size} bytes; an HS256 secret needs at least "
                f"{MIN_SECRET_BYTES} (make one with: openssl rand -hex 32)"
            )


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    needs: tuple[str, ...] = ("database_url", "redis_url"),
    **overrides: Any,
) -> Settings:
    """Read defaults, the optional ``PRESTO_CONFIG`` file, the environment and ``overrides``.

    ``needs`` names the server URLs the command uses (``migrate`` only the database's,
    ``token`` neither); one it does not need may be missing, and is then set to an address no
    one will connect to.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = _read_toml(config_text("defaults.toml"))
    if config_file := environ.get(f"{ENV_PREFIX}CONFIG"):
        try:
            values.update(_read_toml(Path(config_file).read_text()))
        except OSError as exc:
            raise SettingsError(f"PRESTO_CONFIG: cannot read {config_file}: {exc}") from exc
    fields = set(Settings.__struct_fields__)
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX) and (name := key[len(ENV_PREFIX) :].lower()) in fields:
            if raw.strip() == "":
                values.pop(name, None)  # an empty variable means "not set"
            else:
                values[name] = _parse_env_value(name, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for required, unused in (("database_url", _UNUSED_DATABASE), ("redis_url", _UNUSED_REDIS)):
        if not values.get(required):
            if required in needs:
                raise SettingsError(f"{ENV_PREFIX}{required.upper()} is not set")
            values[required] = unused
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


_UNUSED_DATABASE = "postgresql://unused.invalid/unused"
_UNUSED_REDIS = "redis://unused.invalid/0"


def config_text(name: str) -> str:
    """A file of ``config/``: a source checkout keeps it beside the package; a built wheel
    carries a copy inside it."""
    beside = Path(__file__).resolve().parent.parent / "config" / name
    if beside.is_file():
        return beside.read_text()
    return (resources.files("presto_deck") / "config" / name).read_text()


def _read_toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"configuration file is not valid TOML: {exc}") from None


def _parse_env_value(name: str, raw: str) -> Any:
    if name in ("jwt_algorithms", "ws_allowed_origins"):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _describe(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    if " - at `$." in message:
        reason, _, where = message.rpartition(" - at `$.")
        field = where.rstrip("`").split("[")[0].split(".")[0]
        return f"{ENV_PREFIX}{field.upper()}: {reason}"
    if "unknown field" in message.lower():
        return f"configuration: {message}"
    return message
