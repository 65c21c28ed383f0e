"""`omshub up | status | down` for real: MariaDB, Kafka and the connector as processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from omshub.core.procs import pid_alive, wait_until
from tests.integration.conftest import REPO, TEST_HOME


@pytest.fixture
def stack_env(tmp_path):
    home = TEST_HOME / "cli-stack"
    env = {
        **os.environ,
        "OMSHUB_HOME": str(home),
        "OMSHUB_MYSQL_PORT": "23346",
        "OMSHUB_KAFKA_PORT": "29146",
        "OMSHUB_SANDBOX_PORT": "28146",
        "OMSHUB_WORKER_PORT": "26146",
        "OMSHUB_WEB_PORT": "28188",
    }
    env.pop("OMSHUB_MYSQL_URL", None)
    env.pop("OMSHUB_KAFKA_BOOTSTRAP_SERVERS", None)
    yield env
    subprocess.run([sys.executable, "-m", "omshub.cli", "down"], env=env, cwd=REPO, timeout=120)


def omshub(env, *args, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "omshub.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status(env) -> dict:
    result = omshub(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_up_status_down(stack_env):
    first = omshub(stack_env, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    data = status(stack_env)
    assert data["mysql_url"] == "mysql://omshub:***@127.0.0.1:23346/oms"
    assert data["bootstrap_servers"] == "127.0.0.1:29146"
    states = {name: c["state"] for name, c in data["components"].items()}
    assert states == {
        "mariadb": "running",
        "kafka": "running",
        "connector": "running",
        "sandbox": "running",
        "worker": "running",
        "worker-2": "running",
        "web": "running",
        "supervisor": "running",
    }
    assert data["restarts"] == {name: 0 for name in states if name != "supervisor"}
    pids = {name: c["pid"] for name, c in data["components"].items()}
    wait_until(
        lambda: (status(stack_env).get("connector") or {}).get("phase") == "streaming",
        60,
        what="connector streaming",
    )

    again = omshub(stack_env, "up")  # harmless: same processes, nothing restarted
    assert again.returncode == 0, again.stderr
    # (the supervisor is replaced on purpose: it supervises what this `up` was asked for)
    kept = {n: c["pid"] for n, c in status(stack_env)["components"].items() if n != "supervisor"}
    assert kept == {n: pid for n, pid in pids.items() if n != "supervisor"}

    # no command after a kill: the supervisor `up` started brings the connector back
    os.kill(pids["connector"], signal.SIGKILL)
    wait_until(lambda: not pid_alive(pids["connector"]), 10, what="connector to die")

    def restarted() -> bool:
        now = status(stack_env)
        connector = now["components"]["connector"]
        return (
            connector["state"] == "running"
            and connector["pid"] != pids["connector"]
            and now["restarts"].get("connector") == 1
        )

    wait_until(restarted, 60, interval=0.5, what="the supervisor to restart the connector")
    after = status(stack_env)["components"]
    assert after["mariadb"]["pid"] == pids["mariadb"]  # nothing else was touched
    shown = omshub(stack_env, "status")
    assert shown.returncode == 0 and "restarts" in shown.stdout

    down = omshub(stack_env, "down")
    assert down.returncode == 0, down.stderr
    for pid in (c["pid"] for c in after.values()):
        wait_until(lambda pid=pid: not pid_alive(pid), 30, what=f"pid {pid} to exit")
    assert {c["state"] for c in status(stack_env)["components"].values()} == {"stopped"}


def test_port_taken_is_refused_with_the_setting_to_change(stack_env):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 29146))
    blocker.listen()
    try:
        result = omshub(stack_env, "up")
    finally:
        blocker.close()
    assert result.returncode != 0
    assert "29146" in result.stderr and "OMSHUB_KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_settings_are_reported(stack_env):
    env = {**stack_env, "OMSHUB_MYSQL_PORT": "not-a-port"}
    result = omshub(env, "status")
    assert result.returncode != 0 and "OMSHUB_MYSQL_PORT" in result.stderr
