"""One error hierarchy for omshub, with the exit code of each branch.

Every error carries a message a person can act on: what was wrong and what to do about it.
Callers decide on retry vs dead-letter by class, never by parsing messages; the command line
turns any of them into one line on stderr and :func:`exit_code` (never a traceback)::

    OmshubError                          exit 1
    ├── RetryableError(retry_after)      transient: the same work may succeed later
    │   ├── SourceUnavailableError       the database or broker went away; reconnect with backoff
    │   │   ├── DeliveryFailedError      the broker did not acknowledge a record
    │   │   └── LookupUnavailableError   the cancel-application table could not be read
    │   ├── InterceptUnavailableError    a warehouse/carrier intercept could not be asked now
    │   ├── DownstreamUnavailableError   a push got no answer: unreachable, timed out, hung up,
    │   │                                answer cut off or not HTTP
    │   └── GroupActiveError             a consumer group's offsets cannot move while it has members
    ├── PermanentError                   retrying cannot help; record it and move on
    │   ├── ContractError                input did not match the contract (row, event, payload,
    │   │   │                            answer)
    │   │   ├── MoneyError               an amount that cannot be handled exactly
    │   │   └── RefundRejected           a refund that must not be made as asked
    │   └── UnknownGroupError            the consumer group does not exist on the broker
    ├── ArgumentError                    exit 2: command-line arguments that cannot work
    ├── RefusedError                     a sound request refused in the current state
    └── ConfigError                      the configuration cannot work; fail fast at start
        ├── BinlogPositionPurgedError    the saved binlog position no longer exists on the server
        └── StackError                   the local stack cannot start (port taken, stale pid)

Exceptions of the libraries underneath (PyMySQL, confluent-kafka, aiohttp) are translated into
this tree where they are caught, each by one table next to its client (for the workers' HTTP
calls: ``workers.http.TRANSLATION``).
"""

from __future__ import annotations


class OmshubError(Exception):
    """Base of every error omshub raises on purpose."""

    exit_code: int = 1
    """What the command line exits with when this error ends a command."""


class RetryableError(OmshubError):
    """A transient failure: the same work may succeed if tried again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceUnavailableError(RetryableError):
    """The database or the broker cannot be reached right now."""


class DeliveryFailedError(SourceUnavailableError):
    """The broker did not acknowledge a record; restart from the last committed offset."""


class LookupUnavailableError(SourceUnavailableError):
    """The cancel-application table could not be read (connection refused, timeout, ...)."""


class InterceptUnavailableError(RetryableError):
    """The intercept could not be asked right now; the reverse order stays HOLDING for a retry."""


class DownstreamUnavailableError(RetryableError):
    """A push did not get an answer to classify: the downstream was unreachable, timed out, hung
    up or cut its answer off (translated from the HTTP client's exceptions by
    ``workers.http.TRANSLATION``). An answer with a status, even 5xx, is not this error."""


class GroupActiveError(RetryableError):
    """The group's offsets cannot be moved while it has members; possible once they stop."""


class PermanentError(OmshubError):
    """Retrying cannot help: the failure is recorded (row state, DLQ, error record) and skipped."""


class ContractError(PermanentError):
    """Input does not match its contract: a change event, row, payload or downstream answer."""


class MoneyError(ContractError, ValueError):
    """An amount or weight that cannot be handled exactly: not a number, not finite, negative
    where that makes no sense, or finer than a cent.

    Also a ``ValueError``, so callers that validate numbers generically catch it too.
    """


class RefundRejected(ContractError):
    """A refund that must not be made as asked; the message says why, naming order and line."""

    def __init__(
        self, message: str, *, order_no: str | None = None, line_no: int | None = None
    ) -> None:
        super().__init__(message)
        self.order_no = order_no
        self.line_no = line_no


class UnknownGroupError(PermanentError):
    """The consumer group does not exist on the broker (no members, no committed offsets)."""


class ArgumentError(OmshubError):
    """Arguments that cannot work (unknown type or topic, bad time, offset or id)."""

    exit_code = 2


class RefusedError(OmshubError):
    """The request is sound but refused in the current state (a live consumer group)."""


class ConfigError(OmshubError):
    """The configuration cannot work. Raised at start, before anything is read or written."""


class BinlogPositionPurgedError(ConfigError):
    """The connector's saved binlog position was purged from the server."""


class StackError(ConfigError):
    """The embedded local stack cannot be started or stopped as asked."""


def exit_code(exc: BaseException) -> int:
    """The process exit code for an error that ended a command: 2 for arguments, else 1."""
    return exc.exit_code if isinstance(exc, OmshubError) else 1
