"""One error hierarchy for omshub.

Every error carries a message a person can act on: what was wrong and what to do about it.
Callers decide on retry vs dead-letter by class, never by parsing messages::

    OmshubError
    ├── RetryableError(retry_after)   transient: the same work may succeed later
    │   └── SourceUnavailableError    the database or broker went away; reconnect with backoff
    ├── PermanentError                retrying cannot help; record it and move on
    │   └── ContractError             input did not match the contract (row, event, payload, answer)
    └── ConfigError                   the configuration cannot work; fail fast at start
        ├── BinlogPositionPurgedError the saved binlog position no longer exists on the server
        └── StackError                the local stack cannot start (port taken, stale pid)
"""

from __future__ import annotations


class OmshubError(Exception):
    """Base of every error omshub raises on purpose."""


class RetryableError(OmshubError):
    """A transient failure: the same work may succeed if tried again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceUnavailableError(RetryableError):
    """The database or the broker cannot be reached right now."""


class PermanentError(OmshubError):
    """Retrying cannot help: the failure is recorded (row state, DLQ, error record) and skipped."""


class ContractError(PermanentError):
    """Input does not match its contract: a change event, row, payload or downstream answer."""


class ConfigError(OmshubError):
    """The configuration cannot work. Raised at start, before anything is read or written."""


class BinlogPositionPurgedError(ConfigError):
    """The connector's saved binlog position was purged from the server."""


class StackError(ConfigError):
    """The embedded local stack cannot be started or stopped as asked."""
