"""Connector REST shaped like Kafka Connect's, so tools written for Connect work against omshub.

Same paths, methods, status codes and JSON shapes as Connect's REST API
(https://kafka.apache.org/documentation/#connect_rest): the embedded connector is one source
connector with one task (task 0). Pause, resume and restart write the target state the connector
polls (``connectors.binlog.control``); a restart of a connector whose process is gone starts it
again through the local stack, as Connect restarts a FAILED task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.binlog.control import PAUSED, RUNNING, control_path, write_control
from connectors.binlog.status import read_status
from omshub import __version__
from omshub.core.errors import OmshubError
from omshub.core.settings import Settings
from omshub.web.auth import NEEDS, PRINCIPAL, unauthorized
from omshub.web.collect import connector_view

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SECRET_WORDS = ("password", "secret", "token")


def error(status: int, message: str) -> web.Response:
    """Connect's error body: ``{"error_code": ..., "message": ...}``."""
    return web.json_response({"error_code": status, "message": message}, status=status)


class ConnectApi:
    def __init__(
        self,
        settings: Settings,
        token: str,
        restart_process: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.token = token
        self.run_dir = settings.home.resolve() / "run"
        self.worker_id = f"{settings.web_host}:{settings.web_port}"
        self._restart_process = restart_process
        self._restarts: set[asyncio.Task[None]] = set()

    # -- model -----------------------------------------------------------------------------

    def _configured(self) -> tuple[str, dict[str, str]] | None:
        """(name, configuration as the embedded connector runs it: database and server id from
        the settings, not the compose values of the file), or None if it cannot run."""
        from connectors.binlog.config import load_config
        from connectors.binlog.effective import effective_config

        try:
            config = load_config(self.settings.connector_config)
            params = self.settings.mysql()
        except OmshubError:
            return None
        return config.name, effective_config(
            config.raw,
            params,
            server_id=self.settings.connector_server_id,
            bootstrap_servers=self.settings.bootstrap_servers,
        )

    def connectors(self) -> dict[str, Path]:
        """Connector name -> its status file (existing or where it will be written)."""
        found: dict[str, Path] = {}
        configured = self._configured()
        if configured is not None and self.settings.start_connector:
            found[configured[0]] = self.run_dir / "connector.status.json"
        for path in sorted(self.run_dir.glob("connector*.status.json")):
            status = read_status(path)
            if status is not None:
                found[status.name] = path
        return found

    def config_of(self, name: str) -> dict[str, str]:
        configured = self._configured()
        raw = configured[1] if configured is not None and configured[0] == name else {}
        masked = {
            k: ("[hidden]" if any(w in k.lower() for w in _SECRET_WORDS) else v)
            for k, v in raw.items()
        }
        masked["name"] = name
        return masked

    def status_of(self, name: str, path: Path) -> dict[str, Any]:
        status = read_status(path)
        if status is None:
            state, trace = "UNASSIGNED", None
        else:
            view = connector_view(status, path, time.time())
            state = view["state"]
            trace = view["last_error"] if state == "FAILED" else None
        part: dict[str, Any] = {"state": state, "worker_id": self.worker_id}
        if trace:
            part["trace"] = trace
        return {
            "name": name,
            "connector": dict(part),
            "tasks": [{"id": 0, **part}],
            "type": "source",
        }

    def info_of(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "config": self.config_of(name),
            "tasks": [{"connector": name, "task": 0}],
            "type": "source",
        }

    # -- routes ----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.root)
        if self.settings.connect_rest_url:
            # Debezium on Kafka Connect owns the connectors (compose, or `up --cdc debezium`):
            # same paths, proxied, so the dashboard, the CLI and the token check work the same
            for method in ("GET", "POST", "PUT", "DELETE"):
                handler = self.proxy if method == "GET" else self.guard(self.proxy)
                r.add_route(method, "/connectors", handler)
                r.add_route(method, "/connectors/{tail:.*}", handler)
            return
        r.add_get("/connectors", self.list_connectors)
        r.add_post("/connectors", self.not_supported)
        r.add_get("/connectors/{name}", self.get_connector)
        r.add_delete("/connectors/{name}", self.not_supported)
        r.add_get("/connectors/{name}/config", self.get_config)
        r.add_put("/connectors/{name}/config", self.not_supported)
        r.add_get("/connectors/{name}/status", self.get_status)
        r.add_get("/connectors/{name}/tasks", self.get_tasks)
        r.add_get("/connectors/{name}/tasks/{task}/status", self.get_task_status)
        r.add_put("/connectors/{name}/pause", self.guard(self.pause))
        r.add_put("/connectors/{name}/resume", self.guard(self.resume))
        r.add_post("/connectors/{name}/restart", self.guard(self.restart))
        r.add_post("/connectors/{name}/tasks/{task}/restart", self.guard(self.restart_task))

    def guard(self, handler: Handler) -> Handler:
        """Mutating calls need an authenticated caller. ``omshub.web.auth``'s middleware checks
        the credentials (Basic or bearer) before any handler; this refuses a mutation that
        reached here without them, should the app ever be built without that middleware."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if request.get(PRINCIPAL) is None:
                return unauthorized(f"this call changes state: {NEEDS}")
            return await handler(request)

        return guarded

    def _find(self, request: web.Request) -> tuple[str, Path] | web.Response:
        name = request.match_info["name"]
        path = self.connectors().get(name)
        if path is None:
            return error(404, f"Connector {name} not found")
        return name, path

    async def root(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"version": __version__, "commit": "omshub", "kafka_cluster_id": "omshub-embedded"}
        )

    async def list_connectors(self, request: web.Request) -> web.Response:
        names = self.connectors()
        expand = request.query.getall("expand", [])
        if not expand:
            return web.json_response(sorted(names))
        body: dict[str, Any] = {}
        for name, path in sorted(names.items()):
            entry: dict[str, Any] = {}
            if "status" in expand:
                entry["status"] = self.status_of(name, path)
            if "info" in expand:
                entry["info"] = self.info_of(name)
            body[name] = entry
        return web.json_response(body)

    async def get_connector(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self.info_of(found[0]))

    async def get_config(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self.config_of(found[0]))

    async def get_status(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self.status_of(*found))

    async def get_tasks(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        name = found[0]
        return web.json_response(
            [{"id": {"connector": name, "task": 0}, "config": self.config_of(name)}]
        )

    def _task(self, request: web.Request) -> tuple[str, Path] | web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        if request.match_info["task"] != "0":
            return error(404, f"Task {found[0]}-{request.match_info['task']} not found")
        return found

    async def get_task_status(self, request: web.Request) -> web.Response:
        found = self._task(request)
        if isinstance(found, web.Response):
            return found
        task: dict[str, Any] = self.status_of(*found)["tasks"][0]
        return web.json_response(task)

    async def pause(self, request: web.Request) -> web.Response:
        return self._target(request, PAUSED)

    async def resume(self, request: web.Request) -> web.Response:
        return self._target(request, RUNNING)

    def _target(self, request: web.Request, state: str) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        write_control(control_path(found[1]), state=state)
        log.info("connector target state set", extra={"connector": found[0], "target": state})
        return web.Response(status=202)

    async def restart(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        name, path = found
        include_tasks = request.query.get("includeTasks", "false").lower() == "true"
        only_failed = request.query.get("onlyFailed", "false").lower() == "true"
        status = self.status_of(name, path)
        if only_failed and status["connector"]["state"] != "FAILED":
            # as Connect (KIP-745): onlyFailed=true always answers 202 with the status, here
            # unchanged because nothing failed
            return web.json_response(status, status=202)
        self._do_restart(name, path)
        if not include_tasks and not only_failed:
            return web.Response(status=204)
        status["connector"]["state"] = "RESTARTING"
        for task in status["tasks"]:
            task["state"] = "RESTARTING"
        return web.json_response(status, status=202)

    async def restart_task(self, request: web.Request) -> web.Response:
        found = self._task(request)
        if isinstance(found, web.Response):
            return found
        self._do_restart(*found)
        return web.Response(status=204)

    def _do_restart(self, name: str, path: Path) -> None:
        status = read_status(path)
        view = connector_view(status, path, time.time()) if status is not None else None
        if view is not None and view["alive"]:
            write_control(control_path(path), restart=True)
            log.info("connector restart requested", extra={"connector": name})
            return
        if self._restart_process is None:
            return
        log.info("connector process not running; starting it", extra={"connector": name})
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._start_process(loop))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _start_process(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._restart_process is not None
        try:
            await loop.run_in_executor(None, self._restart_process)
        except Exception as exc:  # noqa: BLE001 - the status shows the connector still down
            log.error("connector restart failed", extra={"error": str(exc)})

    async def proxy(self, request: web.Request) -> web.Response:
        import aiohttp

        base = self.settings.connect_rest_url
        assert base is not None
        url = base.rstrip("/") + request.rel_url.path_qs
        body = await request.read()
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.request(
                    request.method,
                    url,
                    data=body or None,
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                ) as answer,
            ):
                payload = await answer.read()
                return web.Response(
                    status=answer.status,
                    body=payload,
                    content_type=answer.content_type or "application/json",
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return error(502, f"Kafka Connect at {base} did not answer ({exc})")

    async def not_supported(self, request: web.Request) -> web.Response:
        return error(
            405,
            f"{request.method} {request.path} is not supported by the embedded connector: its "
            f"configuration lives in {self.settings.connector_config}; edit it and restart the "
            "connector (POST /connectors/<name>/restart)",
        )
