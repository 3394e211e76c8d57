"""One exception root, handled once at the CLI edge.

Exit codes (documented in the README): 1 = the work ran but is incomplete (a symbol failed, gaps
found), 2 = an error stopped the command (bad input, unreachable service, schema out of date).
"""


class OhlcvError(Exception):
    exit_code = 2


class ConfigError(OhlcvError):
    """A setting, flag or argument is invalid."""


class BadTimeframe(ConfigError):
    pass


class BadSymbol(OhlcvError):
    """The exchange does not list this symbol (or it is not a valid ccxt symbol)."""


class ExchangeUnavailable(OhlcvError):
    """The exchange could not be reached or kept failing after retries."""


class ExchangeRejected(OhlcvError):
    """The exchange refused a request as invalid (a bug or an unsupported parameter)."""


class RateLimited(ExchangeUnavailable):
    """The exchange refused us for request weight (429) or banned the IP (418)."""


class StorageError(OhlcvError):
    """The database could not be reached or refused a statement."""


class StorageUnavailable(StorageError):
    """The database could not be reached, or failed for a reason that is not the rows' fault
    (connection lost, shut down, out of resources): retry the same rows later."""


class StorageRejected(StorageError):
    """The database refused these rows (a value it cannot hold, a constraint): retrying the same
    rows will fail again, so the caller must set them apart."""


class SchemaOutOfDate(StorageError):
    pass


class BrokerUnavailable(OhlcvError):
    """The Kafka broker could not be reached."""


class InvalidMessage(OhlcvError):
    """A message on the topic does not hold a valid candle."""


class PartialFailure(OhlcvError):
    """Some of the work failed; the message lists what."""

    exit_code = 1


class WorkerDied(OhlcvError):
    """A part of a long-running pipeline (the consumer thread, the stream) stopped for good."""
