"""The three rates (三率) per unit and month, the ranking with its red and black lists, a 12-month trend, CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import datetime
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from services.gateway.console import i18n
from services.gateway.console.i18n import N_
from services.gateway.console.web import BEIJING, Console, Page
from shared import subjects

STAFF = ("dispatcher", "supervisor")
RATES = ("response", "resolution", "satisfaction")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
TREND_MONTHS = 12
RATE_TITLES = {"response": N_("Response rate"), "resolution": N_("Resolution rate"),
               "satisfaction": N_("Satisfaction rate")}


def _months_back(month: str, n: int) -> list[str]:
    """The n months up to and including `month`, oldest first."""
    year, m = int(month[:4]), int(month[5:])
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{m:02d}")
        year, m = (year, m - 1) if m > 1 else (year - 1, 12)
    return out[::-1]


def _percent(rate: dict | None) -> float | None:
    value = (rate or {}).get("rate")
    return None if value is None else round(value * 100, 1)


def add_rates(console: Console) -> None:
    router, bus, names = console.router, console.bus, console.names

    def asked(page: Page) -> tuple[str, str, dict[str, str]]:
        """The month and unit in the URL (this month and the community when absent or not valid)."""
        query, errors = page.request.query_params, {}
        month = query.get("month") or datetime.now(BEIJING).strftime("%Y-%m")
        if not MONTH.match(month) or not 2000 <= int(month[:4]) <= 2100:
            errors["month"], month = page.gettext("This is not in the expected form."), datetime.now(BEIJING).strftime("%Y-%m")
        unit = query.get("unit") or "community"
        if len(unit) > 64:
            errors["unit"], unit = page.gettext("This is too long."), "community"
        return month, unit, errors

    async def ranking_of(page: Page, month: str) -> dict:
        reply = await bus.ask(subjects.QRY_LEDGER_RANKING, page.actor, {"month": month})
        if not reply.ok:
            raise console.refused(page, reply)
        return reply.data

    @router.get("/rates")
    async def rates(request: Request) -> Response:
        page = await console.page(request, STAFF)
        month, unit, errors = asked(page)
        months = _months_back(month, TREND_MONTHS)
        ranking, *trend = await asyncio.gather(
            ranking_of(page, month),
            *(bus.ask(subjects.QRY_LEDGER_RATES, page.actor, {"unit": unit, "month": m}) for m in months),
        )
        if not trend[-1].ok:
            if trend[-1].refusal.status != 422:
                raise console.refused(page, trend[-1])
            errors["unit"] = i18n.half(trend[-1].refusal.reason, page.locale)
        current = trend[-1].data if trend[-1].ok else None
        units = [u["unit"] for u in ranking.get("units", [])]
        await asyncio.gather(names.load_responders(page.actor, set(units) | ({unit} - {"community"})))
        chart = {
            "locale": "ZH" if page.locale == "zh-CN" else "EN",
            "months": months,
            "series": [{"name": page.gettext(RATE_TITLES[r]),
                        "data": [_percent(t.data.get(r)) if t.ok else None for t in trend]} for r in RATES],
        }
        return console.render(page, "rates.html", 422 if errors else 200, month=month, unit=unit, errors=errors,
                              current=current, ranking=ranking, units=units, chart_json=json.dumps(chart),
                              csv_url=f"/console/rates.csv?{urlencode({'month': month})}", percent=_percent)

    @router.get("/rates.csv")
    async def rates_csv(request: Request) -> Response:
        page = await console.page(request, STAFF)
        month, _, _ = asked(page)
        community, ranking = await asyncio.gather(
            bus.ask(subjects.QRY_LEDGER_RATES, page.actor, {"unit": "community", "month": month}),
            ranking_of(page, month),
        )
        if not community.ok:
            raise console.refused(page, community)
        red = {u["unit"] for u in ranking.get("red", [])}
        black = {u["unit"] for u in ranking.get("black", [])}
        await names.load_responders(page.actor, {u["unit"] for u in ranking.get("units", [])})
        out = io.StringIO()
        writer = csv.writer(out)
        head = ["month", "rank", "unit", "name"]
        for r in RATES:
            head += [f"{r}_rate", f"{r}_numerator", f"{r}_denominator"]
        writer.writerow([*head, "score", "list"])

        def row(rank: str, entry: dict, name: str, listed: str) -> list:
            cells = [month, rank, entry["unit"], name]
            for r in RATES:
                rate = entry.get(r) or {}
                cells += [rate.get("rate") if rate.get("rate") is not None else "", rate.get("numerator", 0),
                          rate.get("denominator", 0)]
            return [*cells, entry.get("score") if entry.get("score") is not None else "", listed]

        writer.writerow(row("", community.data, page.gettext("The whole community"), ""))
        for i, entry in enumerate(ranking.get("units", []), 1):
            listed = "red" if entry["unit"] in red else "black" if entry["unit"] in black else ""
            writer.writerow(row(str(i), entry, names.responder(entry["unit"], page.locale), listed))
        response = Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",  # BOM: Excel reads UTF-8
                            headers={"Content-Disposition": f'attachment; filename="rates-{month}.csv"'})
        console.finish(page, response)
        return response
