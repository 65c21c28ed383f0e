"""The shape of the source tree: files a newcomer can read, each with its reason when it is long."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("omshub", "connectors", "processors", "workers", "schemas")
MAX_LINES = 600
REASON = "Long file:"


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_no_source_file_is_long_without_a_reason_at_its_top() -> None:
    offenders = []
    for path in sources():
        text = path.read_text()
        if text.count("\n") <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if REASON not in doc:
            offenders.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not offenders, (
        f"over {MAX_LINES} lines without '{REASON} <why>' in the module docstring: "
        + ", ".join(offenders)
    )


def test_every_package_directory_is_a_package() -> None:
    missing = [
        str(d.relative_to(REPO))
        for pkg in PACKAGES
        for d in [REPO / pkg, *(p for p in (REPO / pkg).rglob("*") if p.is_dir())]
        if d.name not in ("__pycache__", "static", "json")
        and any(d.glob("*.py"))
        and not (d / "__init__.py").exists()
    ]
    assert not missing, f"directories with modules but no __init__.py: {missing}"
