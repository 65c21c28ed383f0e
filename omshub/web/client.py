"""A small client for the Connect-shaped REST API, used by ``omshub connector ...``.

Going through the REST API (not the status and control files) means the CLI behaves the same
against the embedded stack and any Kafka Connect cluster: point OMSHUB_WEB_HOST/PORT at it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from omshub.core.errors import ConfigError, SourceUnavailableError


class ConnectClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context

    def call(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.base_url}{path}", method=method)
        request.add_header("Accept", "application/json")
        if self.token:
            # on reads too: off loopback they need credentials (OMSHUB_WEB_READ_AUTH)
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_s, context=self.ssl_context
            ) as response:
                body = response.read()
                return response.status, json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            message = data.get("message") if isinstance(data, dict) else None
            text = message or body[:200].decode(errors="replace")
            raise ConfigError(f"{method} {path} answered {exc.code}: {text}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SourceUnavailableError(
                f"cannot reach the omshub REST API at {self.base_url} ({exc}); is `omshub web` "
                "running? `omshub up` starts it"
            ) from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)[1]
