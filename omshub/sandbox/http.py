"""The sandbox's HTTP face: the downstream endpoints, the admin API and the intercept answers.

Every route hands the request to one :class:`omshub.sandbox.server.Sandbox`; the handlers only
decode the request, call it and encode its answer.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from omshub.core.errors import StackError
from omshub.sandbox.journal import Journal
from omshub.sandbox.server import (
    ALL_SYSTEMS,
    DEFAULT_REQUESTS_LIMIT,
    IDEMPOTENCY_WINDOW_S,
    SHUTDOWN_TIMEOUT_S,
    Handler,
    Sandbox,
    json_response,
)
from schemas.pushes import SYSTEMS

log = logging.getLogger(__name__)

SANDBOX_KEY = web.AppKey("sandbox", Sandbox)


def _push_handler(sandbox: Sandbox, system: str, path: str) -> Handler:
    handle = sandbox.handle_push

    async def handler(request: web.Request) -> web.StreamResponse:
        return await handle(system, path, request)

    return handler


def _bad_request(message: str, status: int = 400) -> web.Response:
    return json_response({"error": message, "status": "rejected"}, status)


async def _admin_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    return payload


def _limit(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"limit must be an integer, got {raw!r}") from None


async def _post_faults(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    try:
        payload = await _admin_json(request)
        system = payload.pop("system", ALL_SYSTEMS)
        return json_response(sandbox.set_faults(str(system), **payload))
    except ValueError as exc:
        return _bad_request(str(exc))


async def _get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[SANDBOX_KEY].faults())


async def _delete_faults(request: web.Request) -> web.Response:
    try:
        return json_response(request.app[SANDBOX_KEY].clear_faults(request.query.get("system")))
    except ValueError as exc:
        return _bad_request(str(exc))


async def _get_stats(request: web.Request) -> web.Response:
    return json_response(request.app[SANDBOX_KEY].stats())


async def _get_requests(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    key = request.query.get("key")
    try:
        limit = _limit(request)
        if limit is None and key is None:
            limit = DEFAULT_REQUESTS_LIMIT
        rows = sandbox.requests(key=key, system=request.query.get("system"), limit=limit)
    except ValueError as exc:
        return _bad_request(str(exc))
    response = json_response(rows)
    response.headers["X-Sandbox-Records-Dropped"] = str(sandbox.records_dropped)
    return response


async def _get_keys(request: web.Request) -> web.Response:
    system = request.query.get("system")
    if not system:
        return _bad_request("give ?system=<one of " + ", ".join(request.app[SANDBOX_KEY].systems))
    try:
        return json_response(sorted(request.app[SANDBOX_KEY].keys(system)))
    except ValueError as exc:
        return _bad_request(str(exc))


async def _post_drain(request: web.Request) -> web.Response:
    return json_response(request.app[SANDBOX_KEY].drain())


async def _post_reset(request: web.Request) -> web.Response:
    request.app[SANDBOX_KEY].reset()
    return json_response({"ok": True})


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"ok": True})


async def _not_found(request: web.Request) -> web.Response:
    return _bad_request(f"no sandbox endpoint {request.method} {request.path}", 404)


def build_app(sandbox: Sandbox | None = None) -> web.Application:
    """The aiohttp application serving every downstream system plus the admin endpoints."""
    sandbox = sandbox or Sandbox()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[SANDBOX_KEY] = sandbox
    app[_INTERCEPTS_KEY] = {}
    router = app.router
    for path, system in sandbox.routes.items():
        router.add_route("*", path, _push_handler(sandbox, system, path))
    for system in ("wms", "supplier"):
        router.add_post(f"/{system}/intercepts", _intercept_handler(system))
    router.add_get("/_admin/intercepts", _get_intercepts, allow_head=False)
    router.add_post("/_admin/faults", _post_faults)
    router.add_get("/_admin/faults", _get_faults, allow_head=False)
    router.add_delete("/_admin/faults", _delete_faults)
    router.add_get("/_admin/stats", _get_stats, allow_head=False)
    router.add_get("/_admin/requests", _get_requests, allow_head=False)
    router.add_get("/_admin/keys", _get_keys, allow_head=False)
    router.add_post("/_admin/reset", _post_reset)
    router.add_post("/_admin/drain", _post_drain)
    router.add_get("/healthz", _healthz)
    router.add_route("*", "/{tail:.*}", _not_found)
    return app


#: Order statuses after which a parcel has left the warehouse (or the supplier) for good.
DEPARTED_STATUSES = frozenset({"SHIPPED", "SIGNED"})


_INTERCEPTS_KEY = web.AppKey("intercepts", dict)


def _intercept_handler(system: str) -> Any:
    """WMS / supplier intercepts: stop a parcel unless it already left.

    The decision follows the order status the hub sends (a parcel of a SHIPPED or SIGNED order
    has left), which is what a real WMS decides from its own records. A repeated Idempotency-Key
    gets the first answer.
    """

    async def handler(request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return _json_error(400, "missing Idempotency-Key header")
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("order_no"), str):
            return _json_error(400, "body must be a JSON object with order_no")
        answers = request.app[_INTERCEPTS_KEY]
        answer = answers.get((system, key))
        if answer is None:
            left = str(body.get("order_status") or "") in DEPARTED_STATUSES
            answer = {
                "status": "accepted",
                "system": system,
                "order_no": body["order_no"],
                "intercepted": not left,
                "reason": "parcel already left the warehouse" if left else "parcel stopped",
                "idempotency_key": key,
            }
            answers[(system, key)] = answer
        return web.json_response(answer)

    return handler


async def _get_intercepts(request: web.Request) -> web.Response:
    answers = request.app[_INTERCEPTS_KEY]
    return web.json_response(list(answers.values()))


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"status": "rejected", "error": message}, status=status)


async def serve(host: str, port: int, sandbox: Sandbox | None = None) -> None:
    """Serve the sandbox on host:port until cancelled."""
    runner = web.AppRunner(build_app(sandbox), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        log.info("sandbox listening", extra={"url": f"http://{host}:{port}"})
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(
    host: str,
    port: int,
    idempotency_window_s: float = IDEMPOTENCY_WINDOW_S,
    journal: Path | None = None,
) -> None:
    """Run the sandbox in the foreground (``omshub sandbox``) until SIGINT/SIGTERM.

    With ``journal``, every keyed push request is appended to that file and the keys accepted
    within the window are reloaded from it first (:mod:`omshub.sandbox.journal`).
    """
    log.info(
        "sandbox starting",
        extra={
            "url": f"http://{host}:{port}",
            "systems": ",".join(SYSTEMS),
            "journal": str(journal) if journal else None,
        },
    )
    try:
        opened = Journal(journal) if journal is not None else None
    except OSError as exc:
        raise StackError(
            f"sandbox cannot open its journal {journal}: {exc.strerror or exc}; fix the path or "
            "unset OMSHUB_SANDBOX_JOURNAL"
        ) from exc
    try:
        web.run_app(
            build_app(Sandbox(idempotency_window_s=idempotency_window_s, journal=opened)),
            host=host,
            port=port,
            print=None,
            handle_signals=True,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            backlog=1024,
        )
    except OSError as exc:
        raise StackError(
            f"sandbox cannot listen on {host}:{port}: {exc.strerror or exc}; another sandbox "
            "(see `omshub status`) or another program holds the port; stop it or set "
            "OMSHUB_SANDBOX_PORT"
        ) from exc
    finally:
        if opened is not None:
            opened.close()
