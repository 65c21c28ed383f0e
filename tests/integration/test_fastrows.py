"""The fast row decoder gives exactly what python-mysql-replication gives, on a real binlog."""

from __future__ import annotations

import random

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from connectors.binlog.fastrows import compile_table, fetch_rows
from tests.integration.conftest import sql
from tests.integration.test_connector_events import TYPES_DDL

EXTRA_DDL = (
    "CREATE TABLE wide (id BIGINT UNSIGNED PRIMARY KEY, t TINYINT, tu TINYINT UNSIGNED, "
    "s SMALLINT, m MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, f FLOAT, "
    "d1 DECIMAL(5,0), d2 DECIMAL(30,10), d3 DECIMAL(4,4), c CHAR(3), vb VARBINARY(300), "
    "lt LONGTEXT, mb MEDIUMBLOB, dt1 DATETIME(1), ts0 TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL, "
    "t0 TIME, t6 TIME(6), lat1 VARCHAR(10) CHARACTER SET latin1, en ENUM('x','y','z'), "
    "b64 BIT(64), b3 BIT(3))"
)


def random_wide(rng: random.Random, i: int) -> tuple:
    def maybe(value):
        return None if rng.random() < 0.15 else value

    def r(a: int, b: int) -> int:
        return rng.randint(a, b)

    clock = f"{r(-838, 838)}:{r(0, 59):02d}:{r(0, 59):02d}"

    return (
        i,
        maybe(rng.randint(-127, 127)),
        maybe(rng.randint(0, 255)),
        maybe(rng.randint(-32768, 32767)),
        maybe(rng.randint(-8388608, 8388607)),
        maybe(rng.randint(0, 16777215)),
        maybe(rng.randint(-(2**31), 2**31 - 1)),
        maybe(rng.randint(0, 2**32 - 1)),
        maybe(rng.uniform(-1e6, 1e6)),
        maybe(rng.randint(-99999, 99999)),
        maybe(f"{rng.randint(-(10**19), 10**19)}.{rng.randint(0, 10**10 - 1):010d}"),
        maybe(
            f"0.{rng.randint(0, 9999):04d}"
            if rng.random() < 0.5
            else f"-0.{rng.randint(0, 9999):04d}"
        ),
        maybe("".join(rng.choice("ab中") for _ in range(rng.randint(0, 3)))),
        maybe(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))),
        maybe("长文本" * rng.randint(0, 200)),
        maybe(bytes(rng.randrange(256) for _ in range(rng.randint(0, 70000)))),
        maybe(f"20{r(10, 30)}-0{r(1, 9)}-1{r(0, 9)} 0{r(0, 9)}:1{r(0, 9)}:2{r(0, 9)}.{r(0, 9)}"),
        maybe(f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 10:00:0{rng.randint(0, 9)}"),
        maybe(f"2026-03-02 10:15:30.{rng.randint(0, 999999):06d}"),
        maybe(clock),
        maybe(f"{clock}.{r(0, 999999):06d}"),
        maybe("café"),
        maybe(rng.choice(["x", "y", "z"])),
        maybe(rng.randint(0, 2**64 - 1)),
        maybe(rng.randint(0, 7)),
    )


def test_fast_decoder_matches_library(scratch_db):
    sql(scratch_db, TYPES_DDL, EXTRA_DDL)
    start = sql(scratch_db, "SHOW MASTER STATUS")[0][:2]
    rng = random.Random(5)
    conn = pymysql.connect(**scratch_db.pymysql_kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.executemany(
            "INSERT INTO wide VALUES (" + ", ".join(["%s"] * 25) + ")",
            [random_wide(rng, i) for i in range(1, 401)],
        )
        updated = cur.execute("UPDATE wide SET t = -t, d2 = -d2, en = 'x' WHERE id % 3 = 0")
        deleted = cur.execute("DELETE FROM wide WHERE id % 7 = 0")
    conn.close()
    from tests.integration.test_connector_events import TYPES_ROW

    sql(scratch_db, "SET time_zone = '+00:00'", f"INSERT INTO types_t VALUES {TYPES_ROW % 1}")
    sql(scratch_db, "UPDATE types_t SET dec_neg = -0.01, nothing = 'x'")
    end = sql(scratch_db, "SHOW MASTER STATUS")[0][:2]

    reader = BinLogStreamReader(
        connection_settings={
            "host": scratch_db.host,
            "port": scratch_db.port,
            "user": scratch_db.user,
            "password": scratch_db.password,
        },
        server_id=8123,
        log_file=start[0],
        log_pos=int(start[1]),
        resume_stream=True,
        blocking=False,
        is_mariadb=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[scratch_db.database],
    )
    compared = 0
    compiled_tables = set()
    for event in reader:
        if (reader.log_file, reader.log_pos) > (end[0], int(end[1])):
            break
        table = compile_table(event.columns)
        assert table is not None, f"{event.table} should compile"
        compiled_tables.add(event.table)
        op = {WriteRowsEvent: "c", UpdateRowsEvent: "u", DeleteRowsEvent: "d"}[type(event)]
        fast = fetch_rows(event, table, op)
        assert fast is not None
        library = [
            {k: v for k, v in row.items() if not k.endswith("none_sources")} for row in event.rows
        ]
        for got, want in zip(fast, library, strict=True):
            for image in want:
                diff = {
                    k: (got[image].get(k), v)
                    for k, v in want[image].items()
                    if got[image].get(k) != v
                }
                assert not diff, (event.table, image, diff)
        compared += len(fast)
    reader.close()
    assert compiled_tables == {"wide", "types_t"}
    assert compared == 400 + updated + deleted + 2
