"""docs/RELIABILITY.md's bad-input catalogue names tests that exist.

The catalogue is only worth reading while each entry's test is real: the tables are parsed, and
every ``tests/...py::test_name`` they cite must be a file with a test function of that name
(found by AST, so nothing is imported or run here). Run as a module, this prints the node ids
of the catalogue, for ``pytest $(python -m tests.unit.test_reliability_doc)``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "RELIABILITY.md"
SECTION = "## Bad inputs"
MIN_ENTRIES = 30
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


@dataclass(frozen=True)
class Entry:
    number: int
    what: str
    does: str
    tests: tuple[tuple[str, str], ...]
    line: int


def section(text: str) -> list[tuple[int, str]]:
    """The numbered lines of the "Bad inputs" section, up to the next second-level heading."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == SECTION)
    found: list[tuple[int, str]] = []
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("## "):
            break
        found.append((i + 1, lines[i]))
    return found


def cells(row: str) -> list[str]:
    """A table row's cells, split on ``|`` as GitHub does (even in code spans); ``\\|`` is a
    pipe inside a cell."""
    inner = row.strip()[1:-1]
    return [part.strip().replace("\\|", "|") for part in re.split(r"(?<!\\)\|", inner)]


def entries(text: str) -> list[Entry]:
    found: list[Entry] = []
    for number, line in section(text):
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        row = cells(line)
        if row[:1] == ["#"]:
            assert row == ["#", "input", "what omshub does", "test"], f"line {number}: {row}"
            continue
        assert len(row) == 4, f"line {number}: {len(row)} cells, not 4: {line}"
        found.append(
            Entry(
                number=int(row[0]),
                what=row[1],
                does=row[2],
                tests=tuple(NODE_ID.findall(row[3])),
                line=number,
            )
        )
    return found


@cache
def defined_tests(path: str) -> frozenset[str]:
    """Every ``test_*`` function of a test file, at module level or in a class."""
    file = REPO / path
    if not file.is_file():
        return frozenset()
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


def catalogue() -> list[Entry]:
    return entries(DOC.read_text(encoding="utf-8"))


def test_the_catalogue_has_enough_numbered_entries_with_a_test_each() -> None:
    found = catalogue()
    assert len(found) >= MIN_ENTRIES, f"{len(found)} entries, want at least {MIN_ENTRIES}"
    assert [e.number for e in found] == list(range(1, len(found) + 1)), "numbers run 1, 2, …"
    for entry in found:
        assert entry.what and entry.does, f"line {entry.line}: an empty cell"
        assert entry.tests, f"line {entry.line}: no `tests/...py::test_name` in the test cell"


def test_every_test_the_catalogue_names_exists() -> None:
    missing = [
        f"line {entry.line}: {path}::{name}"
        + ("" if (REPO / path).is_file() else f" ({path} does not exist)")
        for entry in catalogue()
        for path, name in entry.tests
        if name not in defined_tests(path)
    ]
    assert not missing, "tests named in docs/RELIABILITY.md that do not exist:\n" + "\n".join(
        missing
    )


def test_the_parser_finds_what_is_wrong() -> None:
    doc = "\n".join(
        [
            "## Promises",
            "| # | input | what omshub does | test |",
            "| 9 | not in the section | x | `tests/nope.py::test_x` |",
            SECTION,
            "| # | input | what omshub does | test |",
            "|---|---|---|---|",
            "| 1 | `a\\|b` | kept | "
            "`tests/unit/test_reliability_doc.py::test_the_parser_finds_what_is_wrong` |",
            "| 2 | a | gone | `tests/unit/nope.py::test_nothing` |",
            "## Chaos",
            "| 3 | after the section | x | y |",
        ]
    )
    first, second = entries(doc)
    assert (first.number, first.what) == (1, "`a|b`")
    assert first.tests[0][1] in defined_tests(first.tests[0][0])
    assert second.tests == (("tests/unit/nope.py", "test_nothing"),)
    assert defined_tests("tests/unit/nope.py") == frozenset()


if __name__ == "__main__":
    ids = dict.fromkeys(f"{path}::{name}" for e in catalogue() for path, name in e.tests)
    print(" ".join(ids))
