"""The registry as supervisors edit it: `/v1/responders` (list, read, create or replace, deactivate).

Postgres holds the registry (seeded from the data file on first start); the routing service keeps
the indexed copy it routes with and rebuilds it after each edit, so the next whistle sees it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import asyncpg

from services.routing.payloads import ResponderFilter, ResponderPut, ResponderRef
from services.routing.registry import Registry, Window, responder_from
from shared import paging
from shared.contracts import Command, Reply


async def seed_registry(pool: asyncpg.Pool, path: Path) -> None:
    """Load the data file into an empty registry table (first start only; later, only missing command centres)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('routing.seed'))")  # replicas start together
        data = json.loads(path.read_text(encoding="utf-8"))
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM responders)"):
            # a registry seeded before the ladder's rungs were accounts gets them; a rung edited since is kept
            await conn.executemany("INSERT INTO responders (id, data) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                                   [(r["id"], r) for r in data["responders"] if r["kind"] == "command_centre"])
            return
        await conn.executemany("INSERT INTO responders (id, data) VALUES ($1, $2)", [(r["id"], r) for r in data["responders"]])
        await conn.executemany("INSERT INTO grids (id, buildings) VALUES ($1, $2)", list((data.get("grids") or {}).items()))


async def read_registry(pool: asyncpg.Pool) -> Registry:
    rows = await pool.fetch("SELECT data FROM responders")
    grids = {r["id"]: tuple(r["buildings"]) for r in await pool.fetch("SELECT id, buildings FROM grids")}
    return Registry({r["data"]["id"]: responder_from(r["data"]) for r in rows}, grids)


def public(r) -> dict:
    return {
        "id": r.id, "kind": r.kind.value, "name_en": r.name_en, "name_zh": r.name_zh, "superior_id": r.superior_id,
        "branch": r.branch, "building": r.building, "skills": sorted(r.skills),
        "availability": [_window_text(w) for w in r.availability], "max_concurrent": r.max_concurrent, "active": r.active,
    }


def _window_text(w: Window) -> str:
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    ds = sorted(w.days)
    span = days[ds[0]] if len(ds) == 1 else f"{days[ds[0]]}-{days[ds[-1]]}"
    end = "24:00" if w.end is None else w.end.strftime("%H:%M")
    return f"{span} {w.start.strftime('%H:%M')}-{end}"


class RegistryHandlers:
    """Queries and edits of the registry; `holder.registry` is swapped after an edit."""

    def __init__(self, holder, buildings: frozenset[str]):
        self.holder = holder
        self.buildings = buildings

    async def list(self, pool: asyncpg.Pool, cmd: Command[ResponderFilter]) -> Reply:
        """Responders, filtered by kind, branch or building (dispatchers and supervisors)."""
        p = cmd.payload
        asked = paging.window(p.model_dump(include={"limit", "cursor"}), 100, paging.text)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = [r for r in self.holder.registry.values()
                if (not p.kind or r.kind == p.kind) and (not p.branch or r.branch == p.branch)
                and (not p.building or r.building == p.building)]
        rows.sort(key=lambda r: r.id)
        shown = [r for r in rows if after is None or r.id > after[0]][p.offset:p.offset + limit + 1]
        listed = paging.page([public(r) for r in shown], limit, lambda r: (r["id"],))
        return Reply.success({"total": len(rows), **listed})

    async def get(self, pool: asyncpg.Pool, cmd: Command[ResponderRef]) -> Reply:
        """One responder's record (dispatchers, supervisors, and a responder its own)."""
        if cmd.actor.role == "responder" and cmd.actor.id != cmd.payload.id:  # before the 404: no probing for ids
            return Reply.refuse(403, "forbidden", "dispatchers, supervisors and the responder itself only"
                                " / 仅限调度员、督办及响应方本身")
        r = self.holder.registry.responders.get(cmd.payload.id)
        if r is None:
            return Reply.refuse(404, "no_such_responder", "no such responder / 无此响应单位")
        return Reply.success(public(r))

    async def put(self, conn: asyncpg.Connection, cmd: Command[ResponderPut], now: datetime):
        """Create or replace a responder (supervisors); the next routing decision uses it."""
        body = cmd.payload
        responder_id = body.id
        try:
            for window in body.availability:
                Window.parse(window)
        except ValueError as exc:
            return Reply.refuse(422, "invalid", str(exc), "availability"), []
        registry = self.holder.registry
        if body.superior_id and (body.superior_id not in registry or body.superior_id == responder_id):
            return Reply.refuse(422, "unknown_superior", "no such superior / 上级不存在", "superior_id"), []
        if body.kind == "member" and body.building not in self.buildings:
            return Reply.refuse(422, "unknown_building", "a member lives in one of the buildings 1–22 / 党员须住在本社区楼内",
                                "building"), []
        created = responder_id not in registry
        data = {"id": responder_id, **body.model_dump(exclude={"id"})}
        await conn.execute(
            "INSERT INTO responders (id, data, updated_at, updated_by) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (id) DO UPDATE SET data = $2, updated_at = $3, updated_by = $4",
            responder_id, data, now, str(cmd.actor),
        )
        # edits are answered concurrently: build on the registry as it is now, not as it was before
        # the write above (no await from here on, so no other edit can land in between)
        current = self.holder.registry
        responders = dict(current.responders)
        responders[responder_id] = responder_from(data)
        self.holder.registry = Registry(responders, {g: tuple(b) for g, b in current.grids.items()})
        return Reply.success({"responder": public(responders[responder_id]), "created": created}), []
