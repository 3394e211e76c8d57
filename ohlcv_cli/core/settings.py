"""One frozen settings object, built once at the CLI edge from flags, environment and `.env`."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.symbols import parse_symbols
from ohlcv_cli.core.timeframes import parse_timeframe

DEFAULT_SQLITE_URL = "sqlite:///ohlcv.db"
DEFAULT_STREAM_URL = "wss://stream.binance.com:9443"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True,
        populate_by_name=True, hide_input_in_errors=True,
    )

    symbols: Annotated[tuple[str, ...], NoDecode] = ("BTC/USDT", "ETH/USDT")
    timeframe: str = "1m"
    backfill_days: int = Field(7, gt=0)
    realtime_delay_seconds: float = Field(1.0, ge=0)

    kafka_broker: str | None = None
    topic_name: str = "binance-ohlcv"
    topic_partitions: int = Field(3, gt=0)
    consumer_group: str = "ohlcv-db"
    kafka_timeout_seconds: float = Field(10.0, gt=0)
    consumer_workers: int = Field(1, gt=0, le=64)

    database_url: SecretStr | None = None
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("postgres")
    postgres_db: str | None = None
    postgres_host: str | None = None
    postgres_port: int = 5432

    exchange: str = "binance"
    exchange_url: str | None = Field(
        None, validation_alias=AliasChoices("OHLCV_EXCHANGE_URL", "exchange_url")
    )
    binance_api_key: SecretStr | None = None
    binance_secret_key: SecretStr | None = None
    exchange_timeout_seconds: float = Field(10.0, gt=0)
    exchange_weight_limit: int | None = Field(None, gt=0)
    exchange_max_retries: int = Field(5, ge=0)
    backfill_concurrency: int = Field(4, gt=0, le=64)
    backfill_batch_size: int = Field(10_000, gt=0)

    stream_max_catchup_minutes: int = Field(1440, gt=0)
    stream_source: str = "ws"
    stream_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OHLCV_STREAM_URL", "stream_url"),
    )
    stream_streams_per_connection: int = Field(1024, gt=0, le=1024)
    metrics_port: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, v: Any) -> Any:
        return tuple(parse_symbols(v)) if isinstance(v, (str, list, tuple)) else v

    @field_validator("timeframe")
    @classmethod
    def _check_timeframe(cls, v: str) -> str:
        parse_timeframe(v)
        return v

    @field_validator("exchange_url")
    @classmethod
    def _check_exchange_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8900")
        return v.rstrip("/")

    @field_validator("stream_source")
    @classmethod
    def _check_stream_source(cls, v: str) -> str:
        if v not in ("ws", "rest"):
            raise ValueError("must be 'ws' (websocket, REST as the safety net) or 'rest'")
        return v

    @field_validator("stream_url")
    @classmethod
    def _check_stream_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError("must be a ws:// or wss:// URL such as wss://stream.binance.com:9443")
        return v.rstrip("/")

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, v: str) -> str:
        if v not in ("text", "json"):
            raise ValueError("must be 'text' or 'json'")
        return v

    def db_url(self) -> str:
        """DATABASE_URL wins; then POSTGRES_*; else the embedded SQLite file."""
        if self.database_url is not None and self.database_url.get_secret_value():
            return normalize_db_url(self.database_url.get_secret_value())
        if self.postgres_host or self.postgres_db:
            user = quote(self.postgres_user, safe="")
            pw = quote(self.postgres_password.get_secret_value(), safe="")
            return (
                f"postgresql+psycopg://{user}:{pw}@{self.postgres_host or 'localhost'}:"
                f"{self.postgres_port}/{self.postgres_db or 'postgres'}"
            )
        return DEFAULT_SQLITE_URL

    def websocket_url(self) -> str | None:
        """OHLCV_STREAM_URL; else Binance's own when the REST endpoint is Binance's too. With
        OHLCV_EXCHANGE_URL elsewhere and no OHLCV_STREAM_URL: None, since candles from two
        different exchanges must never mix in one store."""
        if self.stream_url:
            return self.stream_url
        return None if self.exchange_url else DEFAULT_STREAM_URL

    def uses_embedded_default(self) -> bool:
        return self.db_url() == DEFAULT_SQLITE_URL


def normalize_db_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_ENV_NAMES = {"exchange_url": "OHLCV_EXCHANGE_URL", "stream_url": "OHLCV_STREAM_URL"}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; flags (overrides) win over environment and `.env`."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        name = _ENV_NAMES.get(field, field.upper())
        msg = err["msg"].removeprefix("Value error, ")
        if err.get("ctx", {}).get("error") is not None and isinstance(err["ctx"]["error"], Exception):
            msg = str(err["ctx"]["error"])
        raise ConfigError(f"invalid setting {name}: {msg}") from None
