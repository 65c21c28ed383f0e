"""The workers' HTTP client: aiohttp's own ``ClientSession``, one per worker pool, tuned once.

A worker makes one call shape (POST a small JSON body, read a small answer) to one downstream, at
most ``pool.concurrency`` at a time, within ``pool.timeout_s``. So each pool gets its own session
and connector, sized and timed for that pool, and nothing is decided per request that can be
decided when the session is made:

* connector ``limit`` = ``limit_per_host`` = the pool's concurrency (a slow system cannot take
  another's connections), keep-alive for ``keepalive_timeout_s`` (below the sandbox's and most
  servers' own, so the client closes an idle connection before the server does), the DNS answer
  cached for ``ttl_dns_cache_s``;
* the pool's :class:`aiohttp.ClientTimeout` as the session's (one exchange: connect, send, read);
* no cookie jar (``DummyCookieJar``: the downstreams set none, and the jar is consulted on every
  request and answer), no ``Accept-Encoding`` (a few hundred bytes gain nothing from compression;
  ``auto_decompress`` stays on for a server that compresses anyway), ``User-Agent: omshub-worker``;
* ``raise_for_status`` off: :mod:`workers.base` classifies every status itself;
* proxies from the environment (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, what ``trust_env``
  reads) resolved once for the pool's base URL with the standard library: ``trust_env=True`` would
  send every request through the thread pool twice (a ``.netrc`` look-up and the proxy look-up);
* TLS verified against the system's trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR`` name another
  bundle, read when aiohttp is imported), or against an explicit ``ssl_context``.

A request whose connection the server closed or reset before any answer came (the keep-alive race:
the server dropped an idle connection as it was reused) is sent once more: :func:`resend_once`,
applied by ``Worker._post`` when an attempt fails (a session middleware would cost every request
a wrapper; this costs nothing until a request fails). aiohttp resends only idempotent methods on
its own; these POSTs carry an ``Idempotency-Key``, so sending one twice is safe, and the race is
not the downstream's failure.

:data:`TRANSLATION` is the one table from the exceptions of a push attempt (aiohttp's, asyncio's,
the OS's) to omshub's error tree, with the message the row's ``last_error`` shows;
:func:`translate` applies it (``Worker._post`` is its one caller).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import aiohttp
import yarl

from omshub.core.errors import DownstreamUnavailableError, OmshubError, PermanentError
from workers.policy import describe_exception
from workers.pool import Pool

__all__ = ["TRANSLATION", "HttpSession", "env_proxy", "request_target", "resend_once", "translate"]

USER_AGENT: Final = "omshub-worker"
_NO_AUTO_HEADERS: Final = ("Accept-Encoding",)
_RESEND_ONCE: Final = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
_NOT_RESENT: Final = (aiohttp.ClientConnectorError,)
"""A connection that could not be made was never used: resending cannot be about the race."""


def resend_once(exc: BaseException) -> bool:
    """Whether a failed attempt is the keep-alive race, to be sent once more (see the module
    docstring): the connection died before the answer, and it was not one that failed to open."""
    return isinstance(exc, _RESEND_ONCE) and not isinstance(exc, _NOT_RESENT)


def request_target(url: str) -> yarl.URL | str:
    """The URL parsed once for all the requests to it (aiohttp would parse a string each time);
    a string yarl refuses is left for aiohttp to reject, with its message, when it is used."""
    try:
        return yarl.URL(url)
    except (ValueError, TypeError):
        return url


def env_proxy(url: str) -> yarl.URL | None:
    """The proxy the environment names for ``url`` (``NO_PROXY`` honoured), as aiohttp's
    ``trust_env`` would pick it: http proxies only; credentials in the proxy URL are aiohttp's
    to send (``Proxy-Authorization``)."""
    target = yarl.URL(url)
    if not target.host or urllib.request.proxy_bypass(target.host):
        return None
    named = urllib.request.getproxies().get(target.scheme)
    if not named:
        return None
    proxy = yarl.URL(named)
    if proxy.scheme != "http":
        return None  # aiohttp speaks to http proxies only (it warns and ignores others)
    return proxy


class HttpSession:
    """Makes and owns one tuned :class:`aiohttp.ClientSession` per worker pool.

    A :class:`workers.base.Worker` given an ``HttpSession`` asks it for its own session
    (:meth:`for_pool`); :meth:`close` closes them all.
    """

    def __init__(
        self,
        *,
        keepalive_timeout_s: float = 15.0,
        ttl_dns_cache_s: int = 300,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.keepalive_timeout_s = keepalive_timeout_s
        self.ttl_dns_cache_s = ttl_dns_cache_s
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self.sessions: list[aiohttp.ClientSession] = []
        self.closed = False

    def for_pool(self, pool: Pool, base_url: str) -> aiohttp.ClientSession:
        """A new session for one worker: its pool's limits and timeout, its URL's proxy."""
        if self.closed:
            raise RuntimeError("HttpSession is closed")
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=pool.concurrency,
                limit_per_host=pool.concurrency,
                keepalive_timeout=self.keepalive_timeout_s,
                ttl_dns_cache=self.ttl_dns_cache_s,
                ssl=self._ssl,
            ),
            timeout=aiohttp.ClientTimeout(total=pool.timeout_s),
            headers={"User-Agent": USER_AGENT},
            skip_auto_headers=_NO_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            auto_decompress=True,
            trust_env=False,
            proxy=env_proxy(base_url),
        )
        self.sessions.append(session)
        return session

    async def close(self) -> None:
        self.closed = True
        for session in self.sessions:
            await session.close()


# --------------------------------------------------------------------- exceptions -> errors

_BAD_URL: Final = (
    "{label} URL {url!r} is invalid; check OMSHUB_DOWNSTREAM_URLS / OMSHUB_DOWNSTREAM_BASE_URL"
)

TRANSLATION: Final[Mapping[type[BaseException], tuple[type[OmshubError], str]]] = MappingProxyType(
    {
        # aiohttp's timeouts (ConnectionTimeoutError, SocketTimeoutError) are also
        # ClientConnectionErrors: this entry comes first so that they read as timeouts
        TimeoutError: (
            DownstreamUnavailableError,
            "{label} did not answer within {timeout_s} s (timeout) at {url}",
        ),
        aiohttp.ClientConnectorError: (
            DownstreamUnavailableError,
            "{label} unreachable at {url}: {reason}",
        ),
        aiohttp.ServerDisconnectedError: (
            DownstreamUnavailableError,
            "{label} closed the connection before answering ({url})",
        ),
        aiohttp.ClientPayloadError: (
            DownstreamUnavailableError,
            "{label} answer was cut off ({url}): {exc}",
        ),
        aiohttp.InvalidURL: (PermanentError, _BAD_URL),
        aiohttp.NonHttpUrlClientError: (PermanentError, _BAD_URL),
        aiohttp.ClientHttpProxyError: (
            DownstreamUnavailableError,
            "{label} proxy refused the request ({url}): {detail}",
        ),
        # what aiohttp raises for an answer its parser rejects (status 400 is aiohttp's own)
        aiohttp.ClientResponseError: (
            DownstreamUnavailableError,
            "{label} answer is not valid HTTP ({url}): {message}",
        ),
        aiohttp.ClientConnectionError: (
            DownstreamUnavailableError,
            "{label} connection failed ({url}): {detail}",
        ),
        ConnectionError: (
            DownstreamUnavailableError,
            "{label} connection failed ({url}): {detail}",
        ),
        aiohttp.ClientError: (
            DownstreamUnavailableError,
            "{label} request failed ({url}): {detail}",
        ),
    }
)
"""Exception of a push attempt -> (omshub error class, message template). The first entry the
exception is an instance of wins; no entry is shadowed by one before it (checked by the tests).
Template fields: ``label`` (``WMS``), ``url``, ``timeout_s``, ``exc`` (its text), ``detail``
(``Type: text``), ``reason`` (a connection failure's cause, short), ``message`` (an HTTP
error's)."""


def translate(
    exc: BaseException, *, label: str, url: str, timeout_s: float, session_closed: bool = False
) -> OmshubError | None:
    """The omshub error for an exception of a push attempt; None when it is not a library's
    (a bug, which the caller reports as such).

    ``session_closed``: aiohttp refuses a request on a closed session with a bare RuntimeError;
    that happens only while the process shuts down, which the push must outlive (retried).
    """
    if session_closed and isinstance(exc, RuntimeError):
        return DownstreamUnavailableError(
            f"{label} was not called ({url}): the HTTP session is closed (shutting down)"
        )
    for library_error, (error, template) in TRANSLATION.items():
        if isinstance(exc, library_error):
            return error(
                template.format(
                    label=label,
                    url=url,
                    timeout_s=timeout_s,
                    exc=exc,
                    detail=describe_exception(exc),
                    reason=_os_reason(exc),
                    message=_http_message(exc),
                )
            )
    return None


def _http_message(exc: BaseException) -> str:
    """An HTTP error's message on one line (aiohttp's parser errors point at the bad byte with a
    caret on a line of its own)."""
    text = " ".join(str(getattr(exc, "message", "") or describe_exception(exc)).split())
    return text.removesuffix(" ^")


def _os_reason(exc: BaseException) -> str:
    """``connection refused`` / ``cannot resolve host (...)`` / the OS message, short."""
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return ""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not accepted ({exc.certificate_error})"
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host ({os_error.strerror or os_error})"
    return os_error.strerror or str(os_error) or describe_exception(exc)
