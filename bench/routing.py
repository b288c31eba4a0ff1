"""Routing decisions per second through the routing service's decision path, at seed and city size.

    .venv/bin/python bench/routing.py [--decisions 20000] [--city-members 100000] [--city-units 2000]

It routes whistles with the same code the routing service's handler runs for every
`whistle.blown` (`services.routing.domain.route`: rule matching, member choice by proximity,
skill, availability, load and rotation, the explanation, the events), against the seed registry
(896 members) and a generated city-sized one, with the packaged rules. Each decision assigns its
summons as in service; once a fifth of the members' capacity is taken, every new summons is
matched by one resolved at random (a steady state, as when responders keep up).
It prints one JSON line. No database or NATS: this measures the decision itself; the pipeline
benchmark measures the whole trip.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.intake.domain import load_catalogue  # noqa: E402
from services.routing import seed  # noqa: E402
from services.routing.domain import LoadBook, load_rules, route  # noqa: E402
from services.routing.registry import Registry, load_registry, responder_from  # noqa: E402
from shared.contracts import Location, Source, Tier, WhistleBlown  # noqa: E402


def city_registry(members: int, units: int, rng: random.Random) -> Registry:
    """A city: `members` party members over 5,000 buildings in 500 grids, `units` sections and departments."""
    base = seed.generate()
    named = [r for r in base["responders"] if r["kind"] != "member"]  # the units the rules name
    buildings = [str(b) for b in range(1, 5001)]
    grids = {f"g{g}": buildings[g * 10:(g + 1) * 10] for g in range(500)}
    raw = list(named)
    for i in range(units - len(named) // 2):
        raw.append({"id": f"u-{i:05d}", "kind": "section" if i % 2 else "department", "name_en": f"unit {i}",
                    "name_zh": f"单位{i}", "superior_id": None, "max_concurrent": 500})
    for i in range(members):
        raw.append({
            "id": f"m-{i:06d}", "kind": "member", "name_en": f"member {i}", "name_zh": f"党员{i}",
            "superior_id": None, "building": rng.choice(buildings),
            "skills": rng.sample(seed.SKILLS, rng.choice((1, 2, 3))), "availability": rng.choice(seed.WINDOWS),
            "max_concurrent": rng.choice((2, 3, 4)),
        })
    return Registry({r["id"]: responder_from(r) for r in raw}, {g: tuple(b) for g, b in grids.items()})


def measure(registry: Registry, buildings: list[str], n: int, rng: random.Random) -> dict:
    rules = load_rules(registry)
    categories = sorted(load_catalogue())
    book = LoadBook()
    now = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)  # a Friday, 19:00 in Beijing: evening windows open
    whistles = [
        WhistleBlown(
            occurred_at=now, whistle_id=uuid4(), actor="bench", category=rng.choice(categories), description="bench",
            location=Location(building=rng.choice(buildings)), tier=rng.choice(list(Tier)), source=Source.online,
        )
        for _ in range(n)
    ]
    summoned: list[str] = []
    unroutable = 0
    open_cap = sum(m.max_concurrent for m in registry.members) // 5
    started = time.perf_counter()
    for i, whistle in enumerate(whistles):
        _, events = route(whistle, rules, registry, book, now + timedelta(seconds=i))
        for e in events:
            if e.subject == "summons.issued":
                summoned.append(e.responder_id)
            elif e.subject == "whistle.unroutable":
                unroutable += 1
        while len(summoned) > open_cap:
            index = rng.randrange(len(summoned))
            summoned[index], summoned[-1] = summoned[-1], summoned[index]
            book.release(summoned.pop())
    elapsed = time.perf_counter() - started
    return {"decisions_per_s": round(n / elapsed, 1), "members": len(registry.members),
            "responders": len(registry.responders), "unroutable": unroutable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--city-members", type=int, default=100_000)
    parser.add_argument("--city-units", type=int, default=2_000)
    args = parser.parse_args()
    rng = random.Random(7)
    seed_result = measure(load_registry(), seed.BUILDINGS, args.decisions, rng)
    print(f"seed: {seed_result}", file=sys.stderr)
    started = time.perf_counter()
    city = city_registry(args.city_members, args.city_units, rng)
    built = time.perf_counter() - started
    city_result = measure(city, [str(b) for b in range(1, 5001)], args.decisions, rng)
    print(f"city: {city_result} (registry built in {built:.1f} s)", file=sys.stderr)
    print(json.dumps({
        "seed_decisions_per_s": seed_result["decisions_per_s"],
        "city_decisions_per_s": city_result["decisions_per_s"],
        "seed": seed_result, "city": city_result, "decisions": args.decisions,
    }))


if __name__ == "__main__":
    main()
