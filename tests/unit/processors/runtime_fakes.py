"""A :class:`processors.runtime.Runtime` of fakes for driving agents without a broker or database.

Every part a test does not pass is a :class:`Unused` that fails loudly when touched, so a test
that exercises more of the runtime than it set up says so instead of connecting somewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omshub.core.settings import Settings
from processors.runtime import AppLinks, Runtime
from schemas.finance import FINANCE_TOPICS


class Unused:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"the test runtime has no {self._name} (.{attribute} used)")


class Sent:
    """Records what an agent published through the app's topics."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def __call__(self, key: bytes, value: bytes) -> None:
        self.records.append((key, value))


def fake_links(assignment: Iterable[Any] = ()) -> AppLinks:
    assigned = list(assignment)
    return AppLinks(
        dlq=Sent(),
        finance={kind: Sent() for kind in FINANCE_TOPICS},
        sellable=Sent(),
        assignment=lambda: assigned,
    )


def fake_runtime(settings: Settings, **parts: Any) -> Runtime:
    fields = {
        name: Unused(name)
        for name in (
            "session",
            "http",
            "writeback",
            "sweeper",
            "reverse",
            "stock",
            "producer",
        )
    }
    fields["workers"] = {}
    fields["links"] = fake_links()
    fields.update(parts)
    return Runtime(settings=settings, **fields)
