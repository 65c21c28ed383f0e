"""Who may call ``omshub web``: HTTP Basic users and the bearer token, checked by one middleware.

Kafka Connect's ``BasicAuthSecurityRestExtension`` guards its REST API with HTTP Basic users from a
JAAS ``PropertyFileLoginModule`` credentials file (``user: password`` lines); scripts and UIs
written for Connect send that. omshub's own CLI sends the bearer token (``OMSHUB_WEB_TOKEN`` or
``<home>/run/web.token``). Both are accepted on every path, so either kind of client works.

What needs credentials (decision D89):

* every mutation (any method but GET, HEAD and OPTIONS), always;
* reads (dashboard, static assets, ``/api/*``, ``/metrics``, Connect's GET paths) unless
  ``OMSHUB_WEB_READ_AUTH`` opens them; its default ``auto`` opens them only while the server
  listens on loopback alone, where every caller is a local user already;
* never ``/healthz``: the stack's and compose's health checks and load balancers ask it, and it
  tells nothing but "up" and the sample time.

Credentials that are sent are checked even where none are needed: a wrong password is a 401, not
an anonymous read. Comparisons are constant-time (``hmac.compare_digest``) over every user, so
the answer's timing tells neither a user's existence nor how much of a password matched. A
refusal is logged with the caller's address, the scheme, the user name and the reason, never what
was sent as the secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from omshub.core.errors import ConfigError
from omshub.core.settings import Settings

log = logging.getLogger(__name__)

REALM = "omshub"
#: paths that never need credentials
OPEN_PATHS = frozenset({"/healthz"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    """The caller a request was authenticated as: a Basic user, or ``token`` for the bearer."""

    name: str
    scheme: str


#: where the middleware leaves the authenticated caller for the handlers
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


class Refused(Exception):
    """Credentials that do not let the caller in; the message is what the 401 says."""

    def __init__(self, message: str, *, scheme: str | None = None, user: str | None = None):
        super().__init__(message)
        self.scheme = scheme
        self.user = user


class Credentials:
    """The Basic users (name -> password) and the bearer token a request may present."""

    def __init__(self, users: Mapping[str, str], token: str | None) -> None:
        self._users = [(name.encode(), password.encode()) for name, password in users.items()]
        self._token = token.encode() if token else None
        # compared against when there is nothing to compare with, so that an empty user list
        # or a missing token costs the same time as a real comparison
        self._decoy = secrets.token_bytes(32)

    @property
    def users(self) -> list[str]:
        return [name.decode() for name, _password in self._users]

    def basic(self, user: str, password: str) -> bool:
        """Whether ``user:password`` is one of the users, comparing with every user each time."""
        given_user, given_password = user.encode(), password.encode()
        found = False
        for name, secret in self._users or [(self._decoy, self._decoy)]:
            same_user = hmac.compare_digest(given_user, name)
            same_password = hmac.compare_digest(given_password, secret)
            found |= same_user and same_password and bool(self._users)
        return found

    def bearer(self, token: str) -> bool:
        expected = self._token or self._decoy
        return hmac.compare_digest(token.encode(), expected) and self._token is not None

    def check(self, header: str) -> Principal:
        """The caller an ``Authorization`` header value names; :class:`Refused` when it names
        nobody or cannot be read."""
        scheme, _, rest = header.strip().partition(" ")
        value = rest.strip()
        if not scheme:
            raise Refused("the Authorization header is empty")
        if scheme.lower() == "basic":
            if not value or " " in value:
                raise Refused(
                    "malformed Authorization header: use 'Basic <base64 of user:password>'"
                )
            user, password = _decode_basic(value)
            if not self.basic(user, password):
                raise Refused("invalid user or password", scheme="basic", user=user)
            return Principal(user, "basic")
        if scheme.lower() == "bearer":
            if not value or " " in value:
                raise Refused("malformed Authorization header: use 'Bearer <token>'")
            if not self.bearer(value):
                raise Refused("invalid bearer token", scheme="bearer")
            return Principal("token", "bearer")
        if not value:
            # one word only: a bare token or password, as `curl -H "Authorization: $TOKEN"` sends
            raise Refused(
                "malformed Authorization header: a scheme and credentials are needed, "
                "'Basic <base64 of user:password>' or 'Bearer <token>'"
            )
        raise Refused(
            f"unsupported authorization scheme {scheme[:20]!r}; use Basic or Bearer",
            scheme=scheme[:20].lower(),
        )


def _decode_basic(value: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("Basic credentials are not valid base64", scheme="basic") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("Basic credentials are not UTF-8 (RFC 7617)", scheme="basic") from None
    user, colon, password = text.partition(":")
    if not colon:
        raise Refused("Basic credentials must be base64 of 'user:password'", scheme="basic")
    return user, password


# --- where users come from --------------------------------------------------------------------


def load_users_file(path: Path) -> dict[str, str]:
    """Users of a Kafka Connect credentials file (JAAS ``PropertyFileLoginModule``).

    One ``user: password`` per line, as Connect's documentation writes them; ``user=password``
    is read too (the file is a Java properties file). Blank lines and lines starting with ``#``
    or ``!`` are comments. A line without a separator, an empty user or password, or a user given
    twice is refused naming the line, never quoting it (it holds a password).
    """
    variable = "OMSHUB_WEB_USERS_FILE"
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{variable} {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{variable} {path} cannot be read: {exc.strerror}") from None
    users: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":
            continue
        cut = min((i for i in (stripped.find(":"), stripped.find("=")) if i >= 0), default=-1)
        if cut < 0:
            problems.append(f"line {number} is not 'user: password'")
            continue
        user, password = stripped[:cut].strip(), stripped[cut + 1 :].strip()
        if not user or any(c.isspace() for c in user):
            problems.append(f"line {number} has an empty user or one with spaces")
        elif not password:
            problems.append(f"line {number} (user {user!r}) has an empty password")
        elif user in users:
            problems.append(f"line {number} gives user {user!r} a second time")
        else:
            users[user] = password
    if problems:
        raise ConfigError(f"{variable} {path}: " + "; ".join(problems))
    if not users:
        raise ConfigError(f"{variable} {path} has no 'user: password' line")
    return users


def load_credentials(settings: Settings, token: str | None) -> Credentials:
    """The users of ``OMSHUB_WEB_USERS_FILE`` and ``OMSHUB_WEB_USERS`` and the bearer token."""
    users = load_users_file(settings.web_users_file) if settings.web_users_file else {}
    for user, password in settings.web_users.items():
        if user in users and users[user] != password.get_secret_value():
            raise ConfigError(
                f"user {user!r} is in both OMSHUB_WEB_USERS and OMSHUB_WEB_USERS_FILE with "
                "different passwords; keep one"
            )
        users[user] = password.get_secret_value()
    return Credentials(users, token)


def loopback_only(host: str) -> bool:
    """Whether a bind address reaches this machine only (``127.0.0.0/8``, ``::1``,
    ``localhost``); every other host name or address, and the wildcard, reach further."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def reads_need_credentials(settings: Settings) -> bool:
    if settings.web_read_auth == "auto":
        return not loopback_only(settings.web_host)
    return settings.web_read_auth == "required"


# --- the middleware ---------------------------------------------------------------------------


def unauthorized(message: str) -> web.Response:
    """401 in Kafka Connect's error shape, offering both schemes (a browser asks for Basic)."""
    response = web.json_response({"error_code": 401, "message": message}, status=401)
    response.headers.add("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
    response.headers.add("WWW-Authenticate", f'Bearer realm="{REALM}"')
    return response


NEEDS = (
    "send 'Authorization: Basic <base64 of user:password>' (OMSHUB_WEB_USERS, "
    "OMSHUB_WEB_USERS_FILE) or 'Authorization: Bearer <token>' (OMSHUB_WEB_TOKEN, or the file "
    "<home>/run/web.token)"
)


def middleware(credentials: Credentials, *, reads_open: bool) -> Middleware:
    """Authenticates every request before any handler (or a 404) sees it."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization")
        mutation = request.method not in READ_METHODS
        if header is None:
            if reads_open and not mutation:
                return await handler(request)
            what = "this call changes state" if mutation else "reads need credentials here"
            log.info(
                "web request without credentials refused",
                extra={"remote": request.remote, "method": request.method, "path": request.path},
            )
            return unauthorized(f"{what}: {NEEDS}")
        try:
            principal = credentials.check(header)
        except Refused as refused:
            log.warning(
                "web authentication failed",
                extra={
                    "remote": request.remote,
                    "method": request.method,
                    "path": request.path,
                    "scheme": refused.scheme or "-",
                    "user": "-" if refused.user is None else refused.user[:64],
                    "reason": str(refused),
                },
            )
            return unauthorized(f"{refused}; {NEEDS}")
        request[PRINCIPAL] = principal
        return await handler(request)

    return authenticate
