"""One Postgres login role per service, owning its own schema and granted nothing else.

Run once by a deployment's superuser before the services start (docker-compose.yml: the one-shot
`db-roles` service), again after a password is rotated. Each service then connects as its own
role (DATABASE_URL names the role, DATABASE_PASSWORD_FILE holds its password), so a compromised
service reads and writes its own tables only:

    DATABASE_URL=postgresql://postgres@db/whistle python -m services.cli.db_roles --secrets /run/secrets
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg

from shared.services import BACKGROUND
from shared.settings import with_password


async def provision(conn: asyncpg.Connection, service: str, password: str) -> None:
    """`service`'s role (created, or its password and limits reset) and its schema, owned by it alone."""
    database = await conn.fetchval("SELECT current_database()")
    statements = await conn.fetch(
        """
        WITH p (svc, pw, db) AS (SELECT $1::text, $2::text, $3::text)
        SELECT format('CREATE ROLE %I LOGIN', svc) FROM p WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = svc)
        UNION ALL SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L', svc, pw) FROM p
        UNION ALL SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', db) FROM p
        UNION ALL SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', db, svc) FROM p
        UNION ALL SELECT 'REVOKE CREATE ON SCHEMA public FROM PUBLIC' FROM p
        UNION ALL SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', svc, svc) FROM p
        UNION ALL SELECT format('ALTER SCHEMA %I OWNER TO %I', svc, svc) FROM p
        UNION ALL SELECT format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc) FROM p
        UNION ALL SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', svc, db, svc) FROM p
        """, service, password, database)
    async with conn.transaction():
        for (statement,) in statements:
            await conn.execute(statement)


async def provision_all(dsn: str, secrets: Path, services: tuple[str, ...] = BACKGROUND) -> list[str]:
    """Every service whose password file `secrets/db_<service>_password` exists; the ones done."""
    conn = await asyncpg.connect(dsn)
    done = []
    try:
        for service in services:
            file = secrets / f"db_{service}_password"
            if file.exists():
                await provision(conn, service, file.read_text().strip())
                done.append(service)
    finally:
        await conn.close()
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="The superuser's DSN (default: DATABASE_URL)")
    parser.add_argument("--password-file", type=Path, default=None, help="The superuser's password (a secret)")
    parser.add_argument("--secrets", type=Path, default=Path("/run/secrets"), help="Where db_<service>_password files are")
    args = parser.parse_args(argv)
    import os

    dsn = args.dsn or os.environ.get("DATABASE_URL")
    if not dsn:
        print("DATABASE_URL or --dsn is required / 缺少数据库连接串", file=sys.stderr)
        return 2
    if args.password_file is not None:
        dsn = with_password(dsn, args.password_file.read_text().strip())
    done = asyncio.run(provision_all(dsn, args.secrets))
    missing = sorted(set(BACKGROUND) - set(done))
    print(f"roles provisioned: {', '.join(done) or 'none'}" + (f"; no password file for: {', '.join(missing)}" if missing else ""))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
