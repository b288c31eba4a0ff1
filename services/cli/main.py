"""The `whistle` command line."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ValidationError

from services.cli.client import ClientError, client
from services.cli.settings import RunnerSettings
from shared.commands import SummonsAction, VerifyWhistle
from shared.contracts import SummonsMove
from shared.validation import refusal_from

app = typer.Typer(help="Whistle: the community blows the whistle, everyone reports (吹哨报到).", no_args_is_help=True)
summons_app = typer.Typer(help="A responder's summons: list, report, arrive, resolve.", no_args_is_help=True)
app.add_typer(summons_app, name="summons")
dead_letters_app = typer.Typer(help="Messages that could not be handled (supervisors): list, show, replay.",
                               no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")

Who = Annotated[str, typer.Option("--as", help="dispatcher, supervisor or a responder id")]


def _home() -> Path:
    return RunnerSettings().home


def _checked(model: type[BaseModel], **fields) -> BaseModel:
    """`fields` as the owner's model takes them; what it would refuse is refused here, as the API would (422)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        r = refusal_from(exc)
        typer.echo(json.dumps({"error": {"code": r.code, "reason": r.reason, "field": r.field}}, ensure_ascii=False,
                              indent=2))
        raise typer.Exit(1) from None


def _call(who: str, method: str, path: str, body: dict | None = None, params: dict | None = None) -> None:
    try:
        with client(_home(), who) as c:
            r = c.request(method, path, json=body, params=params)
    except ClientError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(r.json(), ensure_ascii=False, indent=2))
    if r.status_code >= 400:
        raise typer.Exit(1)


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8080)")] = None,
    demo: Annotated[bool, typer.Option(help="Seed demo whistles when the ledger is empty")] = True,
    cluster: Annotated[bool, typer.Option(
        "--cluster", help="Three embedded NATS nodes (ports WHISTLE_NATS_PORT and the next two), every stream R3",
    )] = False,
    replicas: Annotated[int | None, typer.Option(
        min=1, max=8, help="Processes of each service (default 1): they share the partitions of the work",
    )] = None,
) -> None:
    """Run everything: embedded NATS and Postgres, every service, demo data. Ctrl-C stops it all."""
    from services.cli.runner import run
    from shared.telemetry import configure_logging

    configure_logging("runner", json=False)
    settings = RunnerSettings()
    if port is not None:
        settings.port = port
    settings.demo = demo
    settings.cluster = settings.cluster or cluster
    if replicas is not None:
        settings.replicas = replicas
    run(settings)


@app.command()
def blow(
    category: Annotated[str, typer.Argument(help="A category code, e.g. roof_leak")],
    description: Annotated[str, typer.Argument(help="What is wrong")],
    building: Annotated[str, typer.Option(help="Building 1–22")],
    tier: Annotated[str, typer.Option(help="routine | urgent | complex")] = "routine",
    source: Annotated[str, typer.Option(help="hotline_12345 | grid_patrol | service_point | online | community")] = "community",
    who: Who = "dispatcher",
) -> None:
    """Blow the whistle on a problem (吹哨)."""
    body = {"category": category, "description": description, "location": {"building": building},
            "tier": tier, "source": source}
    _call(who, "POST", "/v1/whistles", body)


@app.command()
def show(whistle_id: str, who: Who = "dispatcher") -> None:
    """A whistle with its summons and timeline."""
    _call(who, "GET", f"/v1/whistles/{whistle_id}")


@app.command()
def verify(whistle_id: str, note: Annotated[str | None, typer.Option()] = None, who: Who = "dispatcher") -> None:
    """Verify the fix and strike the whistle off the ledger (核验销号)."""
    body = _checked(VerifyWhistle, whistle_id=whistle_id, note=note)  # as response checks it
    _call(who, "POST", f"/v1/whistles/{whistle_id}/verify", {"note": body.note})


@app.command()
def route(
    whistle_id: str,
    explain: Annotated[bool, typer.Option("--explain", help="Show every rule and candidate considered")] = False,
    who: Who = "dispatcher",
) -> None:
    """Which rule routed a whistle, whom it summoned, and (with --explain) why each candidate was chosen or skipped."""
    if explain:
        _call(who, "GET", f"/v1/whistles/{whistle_id}/routing")
    else:
        try:
            with client(_home(), who) as c:
                r = c.get(f"/v1/whistles/{whistle_id}/routing")
        except ClientError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        if r.status_code >= 400:
            typer.echo(json.dumps(r.json(), ensure_ascii=False, indent=2))
            raise typer.Exit(1)
        d = r.json()
        typer.echo(f"rule: {d['rule']}")
        for choice in d["choices"]:
            typer.echo(f"  {choice['role']:<16} {choice['chosen'] or '—'}   ({choice['wanted']})")


@summons_app.command("list")
def summons_list(who: Who) -> None:
    """The responder's own summons."""
    _call(who, "GET", "/v1/summons")


def _act(action: SummonsMove):
    def command(summons_id: str, who: Who, note: Annotated[str | None, typer.Option()] = None) -> None:
        move = _checked(SummonsAction, summons_id=summons_id, action=action, note=note)  # as response checks it
        _call(who, "POST", f"/v1/summons/{summons_id}/{move.action}", {"note": move.note})

    command.__doc__ = {SummonsMove.report: "Report (报到): acknowledge the summons.",
                       SummonsMove.arrive: "Arrive on site.", SummonsMove.resolve: "Resolve the problem."}[action]
    return command


for _action in (SummonsMove.report, SummonsMove.arrive, SummonsMove.resolve):
    summons_app.command(_action.value)(_act(_action))


@dead_letters_app.command("list")
def dead_letters_list(
    replayed: Annotated[bool | None, typer.Option("--replayed/--not-replayed",
                                                  help="Only those replayed / never replayed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer as it is, bodies included")] = False,
    who: Who = "supervisor",
) -> None:
    """Dead letters, newest first, one a line: id, consumer, event type, whistle, attempts, replays, last error."""
    params = {"limit": limit} if replayed is None else {"limit": limit, "replayed": str(replayed).lower()}
    if as_json:
        _call(who, "GET", "/v1/dead-letters", params=params)
        return
    try:
        with client(_home(), who) as c:
            r = c.get("/v1/dead-letters", params=params)
    except ClientError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if r.status_code >= 400:
        typer.echo(json.dumps(r.json(), ensure_ascii=False, indent=2))
        raise typer.Exit(1)
    for d in r.json():
        typer.echo(f"{d['id']:>6}  {(d['recorded_at'] or '')[:19]}  {d['consumer'] or d['service']:<22} "
                   f"{d['event_type'] or d['subject']:<18} {d['whistle_id'] or '-':<36}  tried {d['deliveries'] or '?'}"
                   f"  replayed {d['replays']}  {d['reason'][:100]}")


@dead_letters_app.command("show")
def dead_letters_show(dead_letter_id: Annotated[str, typer.Argument(metavar="ID")], who: Who = "supervisor") -> None:
    """One dead letter, with the message's body."""
    _call(who, "GET", f"/v1/dead-letters/{dead_letter_id}")


@dead_letters_app.command("replay")
def dead_letters_replay(dead_letter_id: Annotated[str, typer.Argument(metavar="ID")], who: Who = "supervisor") -> None:
    """Put the message back on its subject once its cause is fixed; a consumer that handled it ignores it."""
    _call(who, "POST", f"/v1/dead-letters/{dead_letter_id}/replay")


def _read_orders(path: Path) -> list[dict]:
    """A CSV (header row: order_id, received_at, category_text, address, description, caller_phone,
    deadline_class) or a JSON list of such objects."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        rows = json.loads(text)
        return rows if isinstance(rows, list) else rows.get("rows", [])
    return list(csv.DictReader(io.StringIO(text)))


@app.command("import")
def import_orders(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON of 12345 work orders")],
    partial: Annotated[bool, typer.Option("--partial", help="Import the good rows even if some are invalid")] = False,
    chunk: Annotated[int, typer.Option(min=1, max=1000, help="Rows per request")] = 500,
    who: Who = "dispatcher",
) -> None:
    """Import 12345 hotline work orders (接诉即办): all or nothing unless --partial; a re-import changes nothing."""
    rows = _read_orders(file)
    chunks = [(start + 1, rows[start:start + chunk]) for start in range(0, len(rows), chunk)]
    totals = {"rows": len(rows), "imported": 0, "unchanged": 0, "failed": []}
    try:
        with client(_home(), who) as c:
            if not partial:  # check every row first, so a bad row anywhere imports nothing
                with typer.progressbar(chunks, label="checking", file=sys.stderr) as bar:
                    failed = []
                    for first, part in bar:
                        r = c.post("/v1/imports", json={"rows": part, "first_row": first, "dry_run": True}, timeout=120)
                        failed += r.json().get("failed", [])
                if failed:
                    typer.echo(json.dumps({**totals, "failed": failed, "imported": 0}, ensure_ascii=False, indent=2))
                    raise typer.Exit(1)
            with typer.progressbar(chunks, label="importing", file=sys.stderr) as bar:
                for first, part in bar:
                    r = c.post("/v1/imports", json={"rows": part, "first_row": first, "partial": partial}, timeout=120)
                    body = r.json()
                    if r.status_code >= 400:
                        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
                        raise typer.Exit(1)
                    totals["imported"] += body["imported"]
                    totals["unchanged"] += body["unchanged"]
                    totals["failed"] += body["failed"]
    except ClientError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(totals, ensure_ascii=False, indent=2))


@app.command("rotate-key")
def rotate_key() -> None:
    """Put a new bearer token signing key first and keep the one before it (两把密钥轮换): tokens it signed
    keep working, nobody is logged out. Applies from the next `whistle up` (its credentials.json then
    holds tokens of the new key); the rotation after next drops the old key."""
    from services.cli import keys
    from shared.auth import SecretError

    settings = RunnerSettings()
    if settings.signing_keys:
        typer.echo("WHISTLE_SIGNING_KEYS is set: rotate there (a new kid:secret first, the old one second)"
                   " / 已设置 WHISTLE_SIGNING_KEYS：请在该变量中轮换", err=True)
        raise typer.Exit(2)
    try:
        kid, kept = keys.rotate(settings.home.resolve())
    except SecretError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"new signing key / 新签名密钥: {kid}; accepted / 有效: {', '.join(kept)}."
               " Restart `whistle up` to use it / 重启 whistle up 后生效")


@app.command()
def docs(out: Annotated[Path, typer.Option(help="Folder for the AsyncAPI documents")] = Path(".whistle/asyncapi")) -> None:
    """Write the AsyncAPI document of every service's subjects (generated by FastStream)."""
    import secrets

    from faststream.specification import AsyncAPI

    from shared.services import SERVICES

    # the services' settings refuse to build without a secret; the documents sign nothing: a throwaway one
    os.environ.setdefault("WHISTLE_AUTH_SECRET", secrets.token_urlsafe(32))
    out.mkdir(parents=True, exist_ok=True)
    for service in SERVICES:
        if not service.background:  # the gateway speaks HTTP: its OpenAPI is at /docs
            continue
        runtime = service.build()
        package = importlib.import_module(f"services.{runtime.name}")
        spec = AsyncAPI(runtime.spec_broker, title=f"Whistle {runtime.name}", version="0.1.0", description=package.__doc__)
        path = out / f"{runtime.name}.json"
        path.write_text(spec.to_specification().to_json())
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
