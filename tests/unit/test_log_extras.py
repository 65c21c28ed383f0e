"""No log call passes an ``extra`` key that :class:`logging.LogRecord` already has.

``logging`` raises ``KeyError: Attempt to overwrite 'created' in LogRecord`` for such a key, at
the moment the line is logged: a bug that hides in the branch that logs it until that branch
runs (`make chaos --cdc debezium` found one in the supervisor's restart of Kafka Connect, where
it stopped every restart). Checked over the source, so no branch needs to run.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("omshub", "connectors", "processors", "workers", "schemas", "bench")
RESERVED = set(logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None).__dict__) | {
    "message",
    "asctime",
}


def extra_keys(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                for key in keyword.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        found.append((key.lineno, key.value))
    return found


def test_no_log_extra_overwrites_a_log_record_attribute() -> None:
    bad = []
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 50
    for path in files:
        for line, key in extra_keys(ast.parse(path.read_text(), str(path))):
            if key in RESERVED:
                bad.append(f"{path.relative_to(REPO)}:{line}: extra key {key!r}")
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_reserved_key() -> None:
    tree = ast.parse('log.info("x", extra={"created": 1, "fine": 2})')
    assert [k for _, k in extra_keys(tree) if k in RESERVED] == ["created"]
