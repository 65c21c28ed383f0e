"""A client of the sandbox's admin API (faults, stats, keys) for the demo, the bench and tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from rich.table import Table

from omshub.core.errors import ContractError, RetryableError, SourceUnavailableError
from omshub.sandbox.server import ALL_SYSTEMS, JSON_TYPE


class SandboxClient:
    """Small synchronous client of the sandbox admin API (CLI and integration tests)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        payload: Any = None,
    ) -> Any:
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", JSON_TYPE)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read())
            message = f"sandbox {method} {path} answered {exc.code}: {detail}"
            if exc.code >= 500:
                raise RetryableError(message) from exc
            raise ContractError(message) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceUnavailableError(
                f"sandbox at {self.base_url} is not reachable ({reason}); "
                "start it with `omshub up` or `omshub sandbox`"
            ) from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ContractError(
                f"sandbox {method} {path} answered non-JSON: {raw[:200]!r}"
            ) from exc

    def health(self) -> bool:
        """True when the sandbox answers /healthz; False when nothing listens."""
        try:
            return bool(self._call("GET", "/healthz").get("ok"))
        except SourceUnavailableError:
            return False

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_admin/stats")
        return result

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_admin/faults")
        return result

    def set_faults(self, system: str = ALL_SYSTEMS, **settings: Any) -> dict[str, Any]:
        """Merge fault settings for one system or ``"*"``; see :meth:`Sandbox.set_faults`."""
        result: dict[str, Any] = self._call(
            "POST", "/_admin/faults", payload={"system": system, **settings}
        )
        return result

    def clear_faults(self, system: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", "/_admin/faults", {"system": system})
        return result

    def reset(self) -> None:
        self._call("POST", "/_admin/reset")

    def keys(self, system: str) -> set[str]:
        return set(self._call("GET", "/_admin/keys", {"system": system}))

    def drain(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("POST", "/_admin/drain")
        return result

    def requests(
        self, key: str | None = None, system: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET", "/_admin/requests", {"key": key, "system": system, "limit": limit}
        )
        return result


def _error_detail(raw: bytes) -> str:
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return str(payload)[:200]


def stats_table(stats: Mapping[str, Any]) -> Table:
    """Render ``/_admin/stats`` for ``omshub sandbox stats``: one row per system and a total."""
    table = Table(title="sandbox downstreams")
    table.add_column("system")
    for name in ("received", "accepted", "unique keys", "duplicates", "5xx", "timeout", "4xx"):
        table.add_column(name, justify="right")
    table.add_column("garbage", justify="right")

    def cells(row: Mapping[str, Any]) -> list[str]:
        faults = row.get("faults", {})
        return [
            str(row.get("received", 0)),
            str(row.get("accepted", 0)),
            str(row.get("unique_keys", 0)),
            str(row.get("duplicates", 0)),
            *(str(faults.get(name, 0)) for name in ("5xx", "timeout", "4xx", "garbage")),
        ]

    systems: Mapping[str, Any] = stats.get("systems", {})
    for index, (system, row) in enumerate(sorted(systems.items())):
        table.add_row(system, *cells(row), end_section=index == len(systems) - 1)
    if "total" in stats:
        table.add_row("total", *cells(stats["total"]), style="bold")
    return table
