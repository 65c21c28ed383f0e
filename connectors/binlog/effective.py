"""The embedded connector's configuration as it runs, for the REST API's config view.

``connectors/debezium/oms.json`` is written for compose: ``database.hostname: mariadb``, port 3306,
user ``debezium``. The embedded connector reads capture settings from that file but connects where
its settings say (``omshub connector run`` passes ``Settings.mysql()`` and
``OMSHUB_CONNECTOR_SERVER_ID``), so showing the file's values would name a server it never talks
to. This replaces what names the machine with what the process uses, the way
``omshub.stack.connect.effective_config`` does for the configuration PUT to Kafka Connect.
"""

from __future__ import annotations

from collections.abc import Mapping

from omshub.core.settings import MySQLParams


def effective_config(
    raw: Mapping[str, str], params: MySQLParams, *, server_id: int, bootstrap_servers: str
) -> dict[str, str]:
    """``raw`` (the file's ``config``) with the database address, user and replica server id the
    connector really uses, and the broker it writes to where the file names one. The password is
    left as the file has it (callers mask it), or a pointer to the settings it comes from: the
    secret itself is never put here."""
    config = dict(raw)
    config.update(
        {
            "database.hostname": params.host,
            "database.port": str(params.port),
            "database.user": params.user,
            "database.server.id": str(server_id),
        }
    )
    # the connector always logs in with a password, the settings' one; never put it here
    config.setdefault("database.password", "[from OMSHUB_MYSQL_URL or OMSHUB_MYSQL_PASSWORD]")
    if "schema.history.internal.kafka.bootstrap.servers" in config:
        config["schema.history.internal.kafka.bootstrap.servers"] = bootstrap_servers
    return config
