"""One frozen settings object, built once per command from flags, environment and `.env`.

`load_settings(uses=...)` validates only the settings a command reads: a bad value of another one
(a typo in SYMBOLS while running `ohlcv db current`) falls back to that setting's default, which
the command never looks at. An override whose name is not a setting is an error.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, PlainValidator, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ohlcv_cli.core.errors import ConfigError, OhlcvError
from ohlcv_cli.core.markets import DEFAULT_PRICE, check_price
from ohlcv_cli.core.symbols import parse_symbols
from ohlcv_cli.core.timeframes import Timeframe, parse_timeframe

DEFAULT_SQLITE_URL = "sqlite:///ohlcv.db"
DEFAULT_ARCHIVE_URL = "https://data.binance.vision"
DEFAULT_STREAM_URL = "wss://stream.binance.com:9443"
# futures websockets: USD-M market streams under <url>/market (2026 layout), COIN-M <url>/stream
DEFAULT_USDM_STREAM_URL = "wss://fstream.binance.com"
DEFAULT_COINM_STREAM_URL = "wss://dstream.binance.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The largest timeout or delay accepted, in seconds: beyond it a value is a typo, not a wish.
MAX_SECONDS = 86_400.0


class _Invalid(ValueError):
    """Carries our own error (BadSymbol, BadTimeframe) through pydantic, to be raised as it is."""

    def __init__(self, error: OhlcvError) -> None:
        super().__init__(str(error))
        self.error = error


def _timeframe(v: Any) -> Timeframe:
    try:
        return parse_timeframe(v)
    except OhlcvError as exc:
        raise _Invalid(exc) from None


def _seconds(default: float, **bounds: float):
    """A finite number of seconds (inf, nan and 1e400 are refused)."""
    return Field(default, allow_inf_nan=False, le=MAX_SECONDS, **bounds)


def _port(default: int | None):
    return Field(default, ge=1, le=65535)


def _check_url_port(url: str) -> None:
    try:
        urlsplit(url).port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None


def _base_url(v: str | None, schemes: tuple[str, ...], message: str, *,
              check_port: bool = True) -> str | None:
    """A base URL setting: empty means unset; a scheme in `schemes` and a host, else `message`;
    stored without a trailing slash."""
    if v is None or v == "":
        return None
    parts = urlsplit(v)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(message)
    if check_port:
        _check_url_port(v)
    return v.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True,
        populate_by_name=True, hide_input_in_errors=True,
    )

    symbols: Annotated[tuple[str, ...], NoDecode] = ("BTC/USDT", "ETH/USDT")
    # parsed once here: services get a Timeframe, never a name to parse again
    timeframe: Annotated[Timeframe, NoDecode, PlainValidator(_timeframe)] = parse_timeframe("1m")
    # which price series of the symbols: trade (every market), mark, index, premium (futures)
    candle_price: str = DEFAULT_PRICE
    backfill_days: int = Field(7, gt=0)
    realtime_delay_seconds: float = _seconds(1.0, ge=0)

    kafka_broker: str | None = None
    topic_name: str = "binance-ohlcv"
    topic_partitions: int = Field(3, gt=0)
    consumer_group: str = "ohlcv-db"
    kafka_timeout_seconds: float = _seconds(10.0, gt=0)
    consumer_workers: int = Field(1, gt=0, le=64)

    database_url: SecretStr | None = None
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("postgres")
    postgres_db: str | None = None
    postgres_host: str | None = None
    postgres_port: int = _port(5432)

    exchange: str = "binance"
    exchange_url: str | None = Field(
        None, validation_alias=AliasChoices("OHLCV_EXCHANGE_URL", "exchange_url")
    )
    binance_api_key: SecretStr | None = None
    binance_secret_key: SecretStr | None = None
    exchange_timeout_seconds: float = _seconds(10.0, gt=0)
    exchange_weight_limit: int | None = Field(None, gt=0)
    exchange_max_retries: int = Field(5, ge=0)
    exchange_retry_seconds: float = Field(300.0, gt=0, allow_inf_nan=False)
    backfill_concurrency: int = Field(4, gt=0, le=64)
    backfill_batch_size: int = Field(10_000, gt=0)
    backfill_in_flight: int = Field(16, gt=0, le=256)  # REST pages in flight across symbols
    backfill_source: str = "auto"  # auto | rest | archive
    archive_url: str | None = Field(None,
                                    validation_alias=AliasChoices("OHLCV_ARCHIVE_URL", "archive_url"))
    archive_concurrency: int = Field(4, gt=0, le=64)

    stream_max_catchup_minutes: int = Field(1440, gt=0)
    stream_source: str = "ws"
    stream_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OHLCV_STREAM_URL", "stream_url"),
    )
    usdm_stream_url: str | None = Field(
        None, validation_alias=AliasChoices("OHLCV_USDM_STREAM_URL", "usdm_stream_url"))
    coinm_stream_url: str | None = Field(
        None, validation_alias=AliasChoices("OHLCV_COINM_STREAM_URL", "coinm_stream_url"))
    stream_streams_per_connection: int = Field(1024, gt=0, le=1024)
    metrics_port: int | None = _port(None)
    log_level: str = "INFO"
    log_format: str = "text"

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, v: Any) -> Any:
        try:
            return tuple(parse_symbols(v)) if isinstance(v, (str, list, tuple)) else v
        except OhlcvError as exc:
            raise _Invalid(exc) from None

    @field_validator("candle_price", mode="before")
    @classmethod
    def _check_price(cls, v: Any) -> Any:
        try:
            return check_price(v) if isinstance(v, str) else v
        except OhlcvError as exc:
            raise _Invalid(exc) from None

    @field_validator("backfill_source")
    @classmethod
    def _check_source(cls, v: str) -> str:
        if v not in ("auto", "rest", "archive"):
            raise ValueError("must be 'auto', 'rest' or 'archive'")
        return v

    @field_validator("archive_url")
    @classmethod
    def _check_archive_url(cls, v: str | None) -> str | None:
        return _base_url(v, ("http", "https"),
                         "must be an http(s) URL such as https://data.binance.vision",
                         check_port=False)

    @field_validator("exchange_url")
    @classmethod
    def _check_exchange_url(cls, v: str | None) -> str | None:
        return _base_url(v, ("http", "https"), "must be an http(s) URL such as http://127.0.0.1:8900")

    @field_validator("stream_source")
    @classmethod
    def _check_stream_source(cls, v: str) -> str:
        if v not in ("ws", "rest"):
            raise ValueError("must be 'ws' (websocket, REST as the safety net) or 'rest'")
        return v

    @field_validator("stream_url")
    @classmethod
    def _check_stream_url(cls, v: str | None) -> str | None:
        return _base_url(v, ("ws", "wss"),
                         "must be a ws:// or wss:// URL such as wss://stream.binance.com:9443")

    @field_validator("usdm_stream_url")
    @classmethod
    def _check_usdm_stream_url(cls, v: str | None) -> str | None:
        return _base_url(v, ("ws", "wss"),
                         f"must be a ws:// or wss:// URL such as {DEFAULT_USDM_STREAM_URL}")

    @field_validator("coinm_stream_url")
    @classmethod
    def _check_coinm_stream_url(cls, v: str | None) -> str | None:
        return _base_url(v, ("ws", "wss"),
                         f"must be a ws:// or wss:// URL such as {DEFAULT_COINM_STREAM_URL}")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value():
            _check_url_port(v.get_secret_value())
        return v

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, v: str) -> str:
        if v.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return v.upper()

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

    def websocket_url(self, family: str = "spot") -> str | None:
        """The websocket base URL of an API family: spot OHLCV_STREAM_URL, USD-M
        OHLCV_USDM_STREAM_URL, COIN-M OHLCV_COINM_STREAM_URL; else Binance's own when the REST
        endpoint is Binance's too. With OHLCV_EXCHANGE_URL elsewhere and that family's URL
        unset: None, since candles from two different exchanges must never mix in one store."""
        url, default = {
            "spot": (self.stream_url, DEFAULT_STREAM_URL),
            "usdm": (self.usdm_stream_url, DEFAULT_USDM_STREAM_URL),
            "coinm": (self.coinm_stream_url, DEFAULT_COINM_STREAM_URL),
        }[family]
        if url:
            return url
        return None if self.exchange_url else default

    def archive_base(self, explicit: bool = False) -> str | None:
        """OHLCV_ARCHIVE_URL; else Binance's own archive when the REST endpoint is Binance's too (or
        the archive was asked for by name). With OHLCV_EXCHANGE_URL elsewhere and no
        OHLCV_ARCHIVE_URL: None, since files of one exchange must never fill another's store."""
        if self.archive_url:
            return self.archive_url
        return DEFAULT_ARCHIVE_URL if explicit or not self.exchange_url else None

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


_ENV_NAMES = {"exchange_url": "OHLCV_EXCHANGE_URL", "stream_url": "OHLCV_STREAM_URL",
              "usdm_stream_url": "OHLCV_USDM_STREAM_URL",
              "coinm_stream_url": "OHLCV_COINM_STREAM_URL", "archive_url": "OHLCV_ARCHIVE_URL"}


def env_name(field: str) -> str:
    """The environment variable (and `.env` key) of a settings field."""
    if field not in Settings.model_fields:
        raise ConfigError(f"unknown setting {field!r}")
    return _ENV_NAMES.get(field, field.upper())


# The settings each kind of collaborator reads; a command validates the groups it uses.
LOGGING = frozenset({"log_level", "log_format"})
DATABASE = frozenset({"database_url", "postgres_user", "postgres_password", "postgres_db",
                      "postgres_host", "postgres_port"})
EXCHANGE = frozenset({"exchange", "exchange_url", "binance_api_key", "binance_secret_key",
                      "exchange_timeout_seconds", "exchange_weight_limit", "exchange_max_retries",
                      "exchange_retry_seconds", "realtime_delay_seconds"})
# Where a backfill or a repair takes history from.
SOURCES = frozenset({"backfill_source", "archive_url", "archive_concurrency", "backfill_in_flight"})
KAFKA = frozenset({"kafka_broker", "topic_name", "topic_partitions", "kafka_timeout_seconds"})


def _field_of(loc: tuple) -> str:
    name = str(loc[0]) if loc else "settings"
    if name in Settings.model_fields:
        return name
    for field, info in Settings.model_fields.items():  # reported by its alias
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name in alias.choices:
            return field
    return name.lower()


def _config_error(err: dict) -> OhlcvError:
    if isinstance(err.get("ctx", {}).get("error"), _Invalid):
        return err["ctx"]["error"].error
    field = _field_of(err["loc"])
    name = _ENV_NAMES.get(field, field.upper())
    msg = err["msg"].removeprefix("Value error, ")
    if isinstance(err.get("ctx", {}).get("error"), Exception):
        msg = str(err["ctx"]["error"])
    return ConfigError(f"invalid setting {name}: {msg}")


def load_settings(*, uses: Iterable[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings; overrides (flags, by field name) win over environment and `.env`.

    `uses`: the fields the caller reads (all when None). Only those must be valid; an invalid
    value of any other falls back to its default."""
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        errors = exc.errors()
    wanted = None if uses is None else set(uses) | set(given)
    for err in errors:
        if wanted is None or _field_of(err["loc"]) in wanted:
            raise _config_error(err) from None
    fallback = {_field_of(e["loc"]): Settings.model_fields[_field_of(e["loc"])].get_default(
        call_default_factory=True) for e in errors}
    try:
        return Settings(**fallback, **given)
    except ValidationError as exc:
        raise _config_error(exc.errors()[0]) from None
