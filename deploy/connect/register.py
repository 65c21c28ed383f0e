"""Register a connector configuration with Kafka Connect and wait until it runs.

The compose service ``register-connector`` runs this once, in the omshub image, when Connect is
healthy: ``python deploy/connect/register.py connectors/debezium/oms.json``.

``PUT /connectors/<name>/config`` creates the connector or replaces its configuration, so running
this again (after editing oms.json) is safe. The file may be in the ``{"name", "config"}`` form
that ``POST /connectors`` takes or a bare configuration map with a ``name`` key. The script then
polls ``GET /connectors/<name>/status`` and fails, with Connect's trace, if the connector or its
task ends ``FAILED`` or does not reach ``RUNNING`` in time, so ``docker compose up`` shows a bad
configuration instead of hiding it.

Environment: ``CONNECT_URL`` (default ``http://connect:8083``), ``CONNECT_WAIT_S`` (default 180).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def say(message: str, *, error: bool = False) -> None:
    """One line on stdout (progress) or stderr (the reason the service failed)."""
    stream = sys.stderr if error else sys.stdout
    stream.write(f"register: {message}\n")
    stream.flush()


def connector_request(document: Any) -> tuple[str, dict[str, str]]:
    """The connector name and the configuration map to PUT, from either accepted file form."""
    if not isinstance(document, dict):
        raise ValueError("connector file must hold a JSON object")
    if isinstance(document.get("config"), dict):
        name, config = document.get("name"), dict(document["config"])
    else:
        name, config = document.get("name"), dict(document)
    if not isinstance(name, str) or not name:
        raise ValueError('connector file needs a non-empty "name"')
    if config.get("name", name) != name:
        raise ValueError(f"config.name {config['name']!r} differs from name {name!r}")
    config.pop("name", None)
    if "connector.class" not in config:
        raise ValueError('connector configuration has no "connector.class"')
    return name, {str(k): str(v) for k, v in config.items()}


def _call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def _failed(status: Any) -> str | None:
    """The trace of a FAILED connector or task in a status answer, else None."""
    connector = status.get("connector", {})
    if connector.get("state") == "FAILED":
        return str(connector.get("trace", "connector FAILED"))
    for task in status.get("tasks", []):
        if task.get("state") == "FAILED":
            return str(task.get("trace", f"task {task.get('id')} FAILED"))
    return None


def _running(status: Any) -> bool:
    tasks = status.get("tasks", [])
    return (
        status.get("connector", {}).get("state") == "RUNNING"
        and bool(tasks)
        and all(t.get("state") == "RUNNING" for t in tasks)
    )


def register(base_url: str, path: Path, wait_s: float) -> int:
    name, config = connector_request(json.loads(path.read_text()))
    url = f"{base_url.rstrip('/')}/connectors/{name}"
    code, answer = _call("PUT", f"{url}/config", config)
    if code not in (200, 201):
        say(f"PUT {url}/config answered {code}: {answer}", error=True)
        return 1
    say(f"{'created' if code == 201 else 'updated'} connector {name} from {path}")
    deadline = time.monotonic() + wait_s
    status: Any = None
    while time.monotonic() < deadline:
        code, status = _call("GET", f"{url}/status")
        if code == 200 and isinstance(status, dict):
            trace = _failed(status)
            if trace:
                say(f"connector {name} FAILED:\n{trace}", error=True)
                return 1
            if _running(status):
                say(f"connector {name} is RUNNING")
                return 0
        time.sleep(2)
    say(f"connector {name} not RUNNING after {wait_s:.0f}s: {status}", error=True)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        say("usage: register.py CONNECTOR_JSON", error=True)
        return 2
    base_url = os.environ.get("CONNECT_URL", "http://connect:8083")
    wait_s = float(os.environ.get("CONNECT_WAIT_S", "180"))
    try:
        return register(base_url, Path(argv[1]), wait_s)
    except (OSError, ValueError) as exc:
        say(f"{exc}", error=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
