"""What a routing decision costs as the load book grows: the rows changed since the last read, against every row.

    .venv/bin/python bench/loads.py [--rows 100000] [--decisions 300] [--rounds 4]

Routing decides from the open summons of every responder and when each was last summoned (`loads`, one row per
responder ever summoned: a district's 100,000 members in time). It keeps the table in memory and reads only the rows
changed since its last read (services/routing/store.py, `LoadCache`); before, every decision read every row.

Against the Postgres of the system `whistle up` started (found as `pipeline.py` finds it; `DATABASE_URL` overrides),
in a scratch schema dropped at the end: routing's migrations, the seed registry, `--rows` rows in `loads`. Then
`--rounds` rounds, each `--decisions` decisions with the code as it is ("changed") and as it was ("every row": the
same handler, its book read whole), alternately, one whistle a transaction on one connection, as at a district's
rates. Meanwhile other writers move a few rows each decision, as other replicas and resolved summons do. Prints one
JSON line: per decision, wall ms, this process's CPU ms and the Postgres backend's CPU ms, for each way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: the other scripts

import pipeline  # noqa: E402  (puts the repo on the path)

from services.routing import app as routing_app  # noqa: E402
from services.routing import domain, store  # noqa: E402
from services.routing.handlers import RoutingHandlers  # noqa: E402
from services.routing.registry import DEFAULT_REGISTRY, load_registry  # noqa: E402
from services.routing.responders import seed_registry  # noqa: E402
from services.routing.settings import RoutingSettings  # noqa: E402
from shared.contracts import Location, Source, Tier, WhistleBlown  # noqa: E402
from shared.db import SHARED_MIGRATIONS, create_pool, ensure_schema, migrate  # noqa: E402
from shared.ids import uuid7  # noqa: E402

SCHEMA = "bench_loads"
NOW = datetime(2026, 3, 6, 11, 0, tzinfo=UTC)  # a Friday, 19:00 in Beijing


def blown(building: str) -> WhistleBlown:
    """Clothes drying at `building`: the nearest party member with the skill leads, chosen by load and rotation."""
    return WhistleBlown(occurred_at=NOW, whistle_id=uuid7(), actor="dispatcher:grid-leader", category="clothes_drying",
                        description="something to fix", location=Location(building=building), tier=Tier.routine,
                        source=Source.grid_patrol)


class EveryRow(RoutingHandlers):
    """The handler as it was: each decision reads the whole table (and the registry's version on its own)."""

    async def _book(self, conn) -> domain.LoadBook:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", store.LOADS_LOCK)
        rows = await conn.fetch("SELECT responder_id, open, last_tick FROM loads")
        book = domain.LoadBook({r["responder_id"]: r["open"] for r in rows},
                               {r["responder_id"]: r["last_tick"] for r in rows})
        book.tick = max(book.last.values(), default=0)
        await self._fresh_registry(conn)
        return book


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace) -> dict:
    dsn = args.database_url or pipeline.locate(argparse.Namespace(database_url=None, nats_url=None))["dsn"]
    await ensure_schema(dsn, SCHEMA)
    pool = await create_pool(dsn, SCHEMA, min_size=2, max_size=2)
    try:
        await migrate(pool, [SHARED_MIGRATIONS, Path(routing_app.__file__).with_name("migrations")])
        await seed_registry(pool, DEFAULT_REGISTRY)
        await pool.execute("INSERT INTO loads (responder_id, open, last_tick) SELECT 'x-' || i, i % 3, i"
                           " FROM generate_series(1, $1) i ON CONFLICT DO NOTHING", args.rows)
        registry = load_registry()
        ways = {name: cls(registry, domain.load_rules(registry), RoutingSettings().rules_file)
                for name, cls in (("changed", RoutingHandlers), ("every_row", EveryRow))}
        results: dict[str, list[dict]] = {name: [] for name in ways}
        async with pool.acquire() as conn, pool.acquire() as other:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            for handlers in ways.values():  # the first read of each (every row) is not what is measured
                async with conn.transaction():
                    await handlers.on_whistles_blown(conn, [blown("2")], NOW)
            for _ in range(args.rounds):
                for name, handlers in ways.items():
                    wall, cpu, pg = time.perf_counter(), time.process_time(), cpu_of(backend)
                    for i in range(args.decisions):
                        async with conn.transaction():
                            await handlers.on_whistles_blown(conn, [blown(str(i % 7 + 1))], NOW)
                        # others move three rows meanwhile (another replica's summons, resolved ones)
                        await other.execute("UPDATE loads SET last_tick = last_tick + 1"
                                            " WHERE responder_id = ANY($1::text[])",
                                            [f"x-{(i * 3 + k) % args.rows + 1}" for k in range(3)])
                    n = args.decisions
                    results[name].append({
                        "wall_ms": round((time.perf_counter() - wall) * 1e3 / n, 3),
                        "client_cpu_ms": round((time.process_time() - cpu) * 1e3 / n, 3),
                        "postgres_cpu_ms": round((cpu_of(backend) - pg) * 1e3 / n, 3),
                    })
                    print(f"[loads] {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    finally:
        await pool.close()
        conn = await pipeline.asyncpg.connect(dsn)
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()
    medians = {name: {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
               for name, runs in results.items()}
    return {"rows": args.rows, "decisions": args.decisions, "rounds": args.rounds, "median": medians, "runs": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000, help="rows in loads besides the seed's (100,000)")
    p.add_argument("--decisions", type=int, default=300, help="decisions a round and way (300)")
    p.add_argument("--rounds", type=int, default=4, help="rounds, each way once a round (4)")
    p.add_argument("--database-url", default=None)
    args = p.parse_args()
    try:
        print(json.dumps(asyncio.run(run(args))))
    except pipeline.NotUp as exc:
        print(f"loads.py: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
