"""``omshub web``: the dashboard, ``/metrics``, the JSON the page polls, and the connector REST API.

One process samples every ``OMSHUB_WEB_REFRESH_S`` in a worker thread (the database and broker
clients block) and every reader gets that sample, so the page, Prometheus and ``omshub status``
never add load beyond one sampler. Binds to 127.0.0.1 unless ``OMSHUB_WEB_HOST`` says otherwise;
who may call what is ``omshub.web.auth``'s middleware, and HTTPS is on with a certificate
(``OMSHUB_WEB_TLS_CERT``/``_KEY``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from omshub.core import mysql
from omshub.core.kafka import Kafka
from omshub.core.settings import Settings
from omshub.core.tls import server_context
from omshub.web.auth import Credentials, load_credentials, middleware, reads_need_credentials
from omshub.web.collect import Collector, History
from omshub.web.connect_api import ConnectApi
from omshub.web.metrics import CONTENT_TYPE, render

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
SAMPLER: web.AppKey[Sampler] = web.AppKey("sampler")


def token_path(settings: Settings) -> Path:
    return settings.home.resolve() / "run" / "web.token"


def resolve_token(settings: Settings, *, create: bool = False) -> str | None:
    """The bearer token: OMSHUB_WEB_TOKEN, else <home>/run/web.token (made on the first start)."""
    if settings.web_token is not None:
        return settings.web_token.get_secret_value()
    path = token_path(settings)
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


class Sampler:
    """Runs the collector periodically and keeps the latest sample and the history."""

    def __init__(self, collector: Collector, refresh_s: float, history_s: float) -> None:
        self.collector = collector
        self.refresh_s = refresh_s
        self.history = History(history_s, refresh_s)
        self.latest: dict[str, Any] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omshub-web-sample")
        self._wake = asyncio.Event()

    async def sample(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        snap = await loop.run_in_executor(self._executor, self.collector.snapshot)
        self.latest = snap
        self.history.add(snap)
        return snap

    def poke(self) -> None:
        """Sample now (after a pause/resume, so the page shows it without waiting a period)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as exc:  # noqa: BLE001 - keep sampling; the page shows stale time
                log.error("sampling failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that races with
            # the wake-up (a REST call pokes the sampler), and shutdown would then hang
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.refresh_s)
            finally:
                waiter.cancel()
            self._wake.clear()

    def close(self) -> None:
        self.collector.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def build_app(
    settings: Settings,
    collector: Collector,
    token: str,
    restart_process: Callable[[], None] | None = None,
    credentials: Credentials | None = None,
) -> web.Application:
    credentials = credentials or load_credentials(settings, token)
    sampler = Sampler(collector, settings.web_refresh_s, settings.web_history_s)
    api = ConnectApi(settings, token, restart_process)
    app = web.Application()

    async def index(request: web.Request) -> web.StreamResponse:
        # Connect's GET / answers JSON; a browser (Accept: text/html) gets the dashboard
        if "text/html" in request.headers.get("Accept", ""):
            raise web.HTTPFound("/dashboard/")
        return await api.root(request)

    async def dashboard(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def overview(_request: web.Request) -> web.Response:
        snap = sampler.latest or await sampler.sample()
        return web.json_response(snap, dumps=_dumps)

    async def history(_request: web.Request) -> web.Response:
        return web.json_response(sampler.history.to_json(), dumps=_dumps)

    async def metrics(_request: web.Request) -> web.Response:
        if sampler.latest is None:
            await sampler.sample()
        return web.Response(
            body=render(lambda: sampler.latest), headers={"Content-Type": CONTENT_TYPE}
        )

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "sampled_at": (sampler.latest or {}).get("ts")})

    @web.middleware
    async def poke_after_change(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if request.method in ("PUT", "POST") and response.status < 300:
            sampler.poke()
        return response

    # authentication first: nothing, not even a 404, is answered to a caller it refuses
    app.middlewares.append(middleware(credentials, reads_open=not reads_need_credentials(settings)))
    app.middlewares.append(poke_after_change)
    app.router.add_get("/", index)
    app.router.add_get("/dashboard/", dashboard)
    app.router.add_get("/dashboard", dashboard)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/history", history)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    api.add_routes(app)

    async def background(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sampler.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sampler.close()

    app.cleanup_ctx.append(background)
    app[SAMPLER] = sampler
    return app


def _dumps(obj: Any) -> str:
    import orjson

    return orjson.dumps(obj, default=str).decode()


def run_web(settings: Settings, kafka: Kafka | None = None) -> None:
    # a certificate or users file that cannot work stops us here, before any client is made
    ssl_context = server_context(settings)
    token = resolve_token(settings, create=True)
    assert token is not None
    credentials = load_credentials(settings, token)
    params = settings.mysql()

    def connect_db() -> Any:
        return mysql.connect(params, autocommit=True, connect_timeout=3)

    collector = Collector(
        settings, connect_db, kafka or Kafka(settings.bootstrap_servers, timeout=3.0)
    )
    restart: Callable[[], None] | None = None
    if settings.start_connector:

        def restart() -> None:
            from omshub.stack.components import CONNECTOR
            from omshub.stack.local import LocalStack

            LocalStack(settings).up([CONNECTOR])

    app = build_app(settings, collector, token, restart, credentials)
    scheme = "https" if ssl_context is not None else "http"
    log.info(
        "web listening",
        extra={
            "url": f"{scheme}://{settings.web_host}:{settings.web_port}",
            "reads": "need credentials" if reads_need_credentials(settings) else "open",
        },
    )
    web.run_app(
        app,
        host=settings.web_host,
        port=settings.web_port,
        ssl_context=ssl_context,
        print=None,
        access_log=None,
        handle_signals=True,
    )
