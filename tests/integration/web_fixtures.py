"""Fixtures for tests that look at `omshub web`: the server process, Chromium and its page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from omshub.core.procs import wait_until
from tests.integration.conftest import REPO
from tests.integration.pipeline import Pipeline, free_port

TOKEN = "it-web-token"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PANEL_DEADLINE_S = 10.0


@dataclass
class Web:
    url: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    home: Path

    def call(self, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        request.add_header("Accept", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read()
                return response.status, json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            body = exc.read()
            return exc.code, json.loads(body) if body else None

    def text(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture
def web(pipeline: Pipeline) -> Iterator[Web]:
    port = free_port()
    env = {
        **pipeline.env,
        "OMSHUB_WEB_PORT": str(port),
        "OMSHUB_WEB_TOKEN": TOKEN,
        "OMSHUB_WEB_REFRESH_S": "1",
        "OMSHUB_START_CONNECTOR": "false",  # the test runs the connector; web must not start one
    }
    log = (pipeline.home / "web.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "omshub.cli", "web"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle = Web(f"http://127.0.0.1:{port}", proc, env, pipeline.home)

    def healthy() -> bool:
        assert proc.poll() is None, (pipeline.home / "web.log").read_text()[-2000:]
        return handle.call("GET", "/healthz")[0] == 200

    wait_until(healthy, 30, what="omshub web", ignore=(OSError, urllib.error.URLError))
    yield handle
    proc.terminate()
    proc.wait(15)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Per test, not per session: Playwright's sync API keeps an event loop running in this
    thread while it is open, and every asyncio test after it would find that loop."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "chromium is missing: `make test` installs Debian's chromium"
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@dataclass
class Page:
    page: Any
    errors: list[str]


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    yield Page(tab, errors)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def cell_text(page: Any, selector: str) -> str | None:
    node = page.query_selector(selector)
    return None if node is None else str(node.inner_text()).strip()


def wait_cell(page: Any, selector: str, check: Any, deadline_s: float, what: str) -> str:
    """Poll a cell of the live page (it refreshes itself; the test never reloads it)."""
    seen: list[str | None] = []

    def ok() -> bool:
        text = cell_text(page, selector)
        seen.append(text)
        return text is not None and bool(check(text))

    try:
        wait_until(ok, deadline_s, interval=0.2, what=what)
    except Exception as exc:
        raise AssertionError(f"{what}: last value {seen[-1] if seen else None!r}") from exc
    return str(seen[-1])
