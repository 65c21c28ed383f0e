"""What every command shares: the main group, settings, injected clients, output and errors.

Settings are built here, once, and passed down in the click context with the factories of the
external clients (database, broker), so a test hands the commands its fakes through ``obj=``
instead of patching modules.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.text import Text

from omshub.core.errors import OmshubError, exit_code
from omshub.core.logs import setup_logging
from omshub.core.settings import Settings

if TYPE_CHECKING:
    from omshub.core.kafka import Kafka
    from processors.writeback import Database

# Piped output (CI logs, `| less`) gets a readable width instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    sys.exit(code)


def load_settings() -> Settings:
    """Settings from the environment; a value that cannot work exits 2 naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        fail(f"invalid settings: {'; '.join(_problem(e['loc'], e['msg']) for e in exc.errors())}")
    except SettingsError as exc:
        # a dict or list setting whose value is not JSON: pydantic-settings raises before
        # validating, naming the field only in its message
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"OMSHUB_{found.group(1).upper()}" if found else "an OMSHUB_ variable"
        fail(f"invalid settings: {name} is not valid JSON: {exc.__cause__ or exc}")


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """``OMSHUB_WORKER_POOLS[wms][timeout_s]: ...``: the variable, then where inside its JSON."""
    variable = f"OMSHUB_{str(loc[0]).upper()}" if loc else "OMSHUB_*"
    return variable + "".join(f"[{part}]" for part in loc[1:]) + f": {message}"


def _database(settings: Settings) -> Database:
    from processors.writeback import Database

    return Database(settings.mysql())


def _kafka(settings: Settings) -> Kafka:
    from omshub.core.kafka import Kafka

    return Kafka(settings.bootstrap_servers, timeout=15.0)


@dataclass(frozen=True)
class Clients:
    """Factories of the external clients the ops commands use (tests pass fakes via ``obj=``)."""

    database: Callable[[Settings], Database] = field(default=_database)
    kafka: Callable[[Settings], Kafka] = field(default=_kafka)


@dataclass(frozen=True)
class CliContext:
    settings: Settings
    clients: Clients


class OmshubGroup(click.Group):
    """Turns omshub errors into one readable line and their exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OmshubError as exc:
            fail(str(exc), code=exit_code(exc))


@click.group(cls=OmshubGroup)
@click.option("-v", "--verbose", is_flag=True, help="Show structured logs on stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """omshub: CDC-driven integration hub for the OMS database."""
    settings = load_settings()
    # Interactive commands print tables; their logs only matter with -v. Long-running services
    # (connector run) switch to settings.log_level themselves.
    setup_logging(settings.log_level if verbose else "WARNING")
    clients = ctx.obj if isinstance(ctx.obj, Clients) else Clients()
    ctx.obj = CliContext(settings=settings, clients=clients)


def cli_context(ctx: click.Context) -> CliContext:
    found = ctx.find_object(CliContext)
    assert found is not None, "commands run under omshub.cli.main"
    return found


def ctx_settings(ctx: click.Context) -> Settings:
    return cli_context(ctx).settings


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        overrides[key.strip()] = value
    return overrides
