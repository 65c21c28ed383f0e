"""The ``omshub`` command line: one module per command family, all on :data:`main`.

``omshub.cli.base`` holds the main group, the settings built once per invocation and the injected
clients; each module below adds its commands to that group when imported.
"""

from __future__ import annotations

from omshub.cli import connector, db, demo, serve, stack
from omshub.cli.base import main
from omshub.cli.dlq import dlq
from omshub.cli.replay import replay

main.add_command(replay)
main.add_command(dlq)
# resnapshot is an ad-hoc re-read of a table, so it is listed under `replay` too
replay.add_command(connector.resnapshot, "resnapshot")

__all__ = ["connector", "db", "demo", "main", "serve", "stack"]
