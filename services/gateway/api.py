"""The HTTP API under /v1 (OpenAPI at /docs). Each call is forwarded to the service that owns it."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Body, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.gateway.bus import Bus
from services.gateway.console import mount as mount_console
from services.gateway.edge import Edge, TokenCache
from services.gateway.limits import TokenBuckets
from services.gateway.links import build_router as links_router
from services.gateway.links import resident_page, wants_html
from services.gateway.open311 import build_router as open311_router
from services.gateway.revocations import Revocations, RevocationWatch
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import build_router as tokens_router
from services.intake.payloads import ReporterErase
from services.response.payloads import FollowUpAnswer, FollowUpLink, SummonsPage
from shared import auth, heap, paging, subjects
from shared.commands import (
    Arbitration,
    ExtensionAsk,
    ExtensionDecision,
    ExtensionRequest,
    FollowUp,
    RaiseWhistle,
    ResponderIn,
    SummonsAction,
    VerifyWhistle,
)
from shared.contacts import ContactRule
from shared.contracts import NOT_SUMMONABLE, Actor, Reply, ResponderKind, ReturnReason, SummonsMove
from shared.validation import refusal_from


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: str | None = Field(default=None, max_length=1000)


class Move(Note):
    """What a return or a transfer needs besides the note."""

    reason_code: ReturnReason | None = None
    reason: str | None = Field(default=None, max_length=1000)
    to_responder_id: str | None = Field(default=None, max_length=64)
    photo_url: str | None = Field(default=None, max_length=500, description="Resolve: a photo of the fix")


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    client: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="Who gets the key")
    note: str | None = Field(default=None, max_length=1000)


class ImportBatch(BaseModel):
    """12345 work orders: order_id, received_at, category_text, address, description, caller_phone, deadline_class."""

    model_config = ConfigDict(extra="forbid")
    rows: list[dict] = Field(min_length=1, max_length=1000)
    partial: bool = Field(default=False, description="Import the good rows even if some are invalid")
    dry_run: bool = Field(default=False, description="Check only; import nothing")
    first_row: int = Field(default=1, ge=1, description="Row number of the first row, for error reports")


class Erasure(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(min_length=1, max_length=1000, description="Why: the reporter's request it answers")


AUDIT_COLUMNS = ("at", "whistle_id", "type", "actor_role", "actor_id")


def audit_csv(rows: list[dict], header: bool = False) -> str:
    """Audit rows as CSV lines; a cell that a spreadsheet would take for a formula is quoted as text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(AUDIT_COLUMNS)
    for row in rows:
        writer.writerow([("'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v)
                         for v in (row[c] for c in AUDIT_COLUMNS)])
    return out.getvalue()


def wants_json(request: Request) -> bool:
    """JSON when the client asks for it before (or instead of) CSV."""
    accept = request.headers.get("accept", "").lower()
    json_at, csv_at = accept.find("application/json"), accept.find("text/csv")
    return json_at >= 0 and (csv_at < 0 or json_at < csv_at)


class Verification(Note):
    photo_url: str | None = Field(default=None, max_length=500)


# every command takes one; a retry with it gets the first answer (the owner keeps it per caller)
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=128,
    description="Any string of 1–128 characters; a retry with the same key gets the first answer, not a second effect",
)]
Limit = Annotated[int, Query(ge=1, le=paging.MAX_LIMIT, description="Rows a page, at most")]
Cursor = Annotated[str | None, Query(
    min_length=1, max_length=paging.MAX_CURSOR, pattern=r"^[A-Za-z0-9_-]+$",
    description="Where the next page starts: X-Next-Cursor (or the Link rel=\"next\") of the page before",
)]


def error(status: int, code: str, reason: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "reason": reason, "field": field}})


def answer(reply: Reply, status: int = 200) -> JSONResponse:
    if reply.ok:
        return JSONResponse(status_code=status, content=reply.data)
    r = reply.refusal
    response = error(r.status, r.code, r.reason, r.field)
    if isinstance(reply.data, dict) and reply.data.get("failed"):  # e.g. an import's invalid rows
        response = JSONResponse(status_code=r.status, content={
            "error": {"code": r.code, "reason": r.reason, "field": r.field}, "failed": reply.data["failed"]})
    return response


def paged(request: Request, reply: Reply, body=lambda data: data["items"]) -> JSONResponse:
    """A page of a list as the body it always was; `Link: rel="next"` and `X-Next-Cursor` when there is more."""
    if not reply.ok:
        return answer(reply)
    response = JSONResponse(content=body(reply.data))
    if cursor := reply.data.get("next_cursor"):
        following = request.url.include_query_params(cursor=cursor)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
        response.headers["X-Next-Cursor"] = cursor
    return response


RESIDENT = Actor(role="resident", id="follow-up-link")  # the link itself is the credential


def owned(model: type[BaseModel], **fields) -> dict | JSONResponse:
    """The payload as the owner's model has it (what the owner validates again), or the 422 naming the field."""
    try:
        return model(**fields).model_dump(mode="json")
    except ValidationError as exc:
        r = refusal_from(exc)
        return error(r.status, r.code, r.reason, r.field)


def resident_key(token: str, key: str | None) -> str | None:
    """A resident's Idempotency-Key, scoped to its link: every resident is the same caller to the owner."""
    return None if key is None else hashlib.sha256(f"{token}\n{key}".encode()).hexdigest()


def actor_of(request: Request) -> Actor:
    return request.state.actor


def create_app(settings: GatewaySettings | None = None, bus: Bus | None = None,
               revocations: Revocations | None = None) -> FastAPI:
    """The gateway's app; `bus` is for tests (a fake owner on the other side)."""
    settings = settings or GatewaySettings()
    bus = bus or Bus(settings.nats_url, settings.request_timeout_s, settings.command_signer())
    secret = settings.auth_secret.get_secret_value()
    keys = settings.key_ring()  # bearer tokens: the first key signs, every one is accepted (rotation)
    # the revoked tokens: loaded from routing at start and kept current (tests may hand a list in)
    revocations = revocations if revocations is not None else Revocations()
    watch = RevocationWatch(bus, revocations, settings.revocations_refresh_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await bus.connect()
        await watch.start()
        heap.settle()
        yield
        await watch.stop()
        await bus.close()

    app = FastAPI(
        title="Whistle API",
        description="The community blows the whistle, everyone reports (吹哨报到). Bearer tokens name one role.",
        version="0.1.0",
        lifespan=lifespan,
        # metrics are Prometheus's (/metrics); FastAPI's OpenTelemetry hooks, unused, looked the providers
        # up on every request (3-4% of the gateway's CPU under load)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    limiter = TokenBuckets(settings.rate_per_s, settings.rate_burst, overrides=settings.rate_overrides)

    async def blow(actor: Actor, raised: RaiseWhistle, key: str | None) -> JSONResponse:
        """POST /v1/whistles: what both its paths do once the body and the key are valid."""
        reply = await bus.command(subjects.CMD_INTAKE_BLOW, actor, {**raised.model_dump(mode="json"),
                                                                     "idempotency_key": key}, idempotency_key=key)
        return answer(reply, 200 if reply.ok and reply.data.get("replayed") else 201)

    async def blow_fast(scope: dict, body: bytes, actor: Actor) -> tuple[int, bytes] | None:
        """POST /v1/whistles without FastAPI when the body and Idempotency-Key are valid (most CPU of a blow
        was FastAPI's); None otherwise, and `raise_whistle` below answers, with FastAPI's exact 422s."""
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"idempotency-key"), None)
        if key is not None and not 1 <= len(key) <= 128:
            return None
        try:
            raised = RaiseWhistle.model_validate_json(body)
        except ValidationError:
            return None
        response = await blow(actor, raised, key)
        return response.status_code, response.body

    app.add_middleware(Edge, tokens=TokenCache(keys, revocations), limiter=limiter,
                       max_body_bytes=settings.max_body_bytes, max_import_bytes=settings.max_import_bytes, fast={("POST", "/v1/whistles"): blow_fast})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first["loc"] if p not in ("body", "query", "path", "header")]
        return JSONResponse(
            status_code=422,
            content={
                "error": {"code": "invalid", "field": ".".join(loc) or None, "reason": first["msg"]},
                "errors": [{"field": ".".join(str(p) for p in e["loc"][1:]), "reason": e["msg"]} for e in errors],
            },
        )

    @app.get("/healthz", tags=["ops"], summary="200 only when every service is ready")
    async def healthz() -> JSONResponse:
        health = await bus.health()
        services = {name: h["ready"] for name, h in health.items()}
        problems = {name: h["problems"] for name, h in health.items() if not h["ready"]}
        if not revocations.loaded:  # until then every bearer token gets 503
            problems["gateway"] = {"revocations": {"reason": "revoked tokens not loaded from routing yet"
                                                   " / 尚未从路由服务加载已吊销令牌"}}
        ready = all(services.values()) and revocations.loaded
        content = {"ready": ready, "services": services} | ({"problems": problems} if problems else {})
        return JSONResponse(status_code=200 if ready else 503, content=content)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/categories", tags=["intake"], summary="The service catalogue / 问题类别")
    async def categories(request: Request) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_INTAKE_CATEGORIES, actor_of(request)))

    @app.get("/v1/buildings", tags=["routing"],
             summary="The 22 buildings: grid, WGS 84 centre and footprint (GeoJSON polygon) / 楼栋及坐标")
    async def buildings(request: Request) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_ROUTING_BUILDINGS, actor_of(request)))

    @app.get("/v1/grids", tags=["routing"], summary="The grids: their buildings, centre and bounds / 网格")
    async def grids(request: Request) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_ROUTING_GRIDS, actor_of(request)))

    @app.post("/v1/whistles", tags=["intake"], status_code=201, summary="Blow the whistle / 吹哨")
    async def raise_whistle(
        request: Request, body: RaiseWhistle, idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return await blow(actor_of(request), body, idempotency_key)  # an invalid body never gets here: 422

    @app.post("/v1/imports", tags=["intake"],
              summary="Import a batch of 12345 work orders (up to 1,000 rows a call) / 导入12345工单")
    async def import_orders(
        request: Request, body: ImportBatch, idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return answer(await bus.command(subjects.CMD_INTAKE_IMPORT, actor_of(request), body.model_dump(),
                                        idempotency_key=idempotency_key))

    @app.get("/v1/whistles", tags=["ledger"], summary="The ledger: open whistles / 问题清单")
    async def list_whistles(
        request: Request,
        status: Annotated[
            Literal["open", "dispatched", "resolved", "verified", "closed", "unroutable"] | None, Query()
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> JSONResponse:
        payload = {"status": status, "limit": limit, "cursor": cursor}
        return paged(request, await bus.ask(subjects.QRY_LEDGER_WHISTLES, actor_of(request), payload))

    @app.get("/v1/classes", tags=["intake"], summary="Problem classes / 一个诉求解决一类问题")
    async def list_classes(
        request: Request,
        status: Annotated[Literal["open", "raised"] | None, Query()] = None,
        category: Annotated[str | None, Query(max_length=64)] = None,
        building: Annotated[str | None, Query(max_length=16)] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> JSONResponse:
        payload = {"status": status, "category": category, "building": building, "limit": limit, "cursor": cursor}
        return paged(request, await bus.ask(subjects.QRY_INTAKE_CLASSES, actor_of(request), payload))

    @app.get("/v1/whistles/{whistle_id}", tags=["ledger"], summary="A whistle, its summons and timeline")
    async def get_whistle(request: Request, whistle_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_LEDGER_WHISTLE, actor_of(request), {"id": whistle_id}))

    # the three rates' period: month=YYYY-MM, or from / to dates (to exclusive), in Beijing time; the ledger
    # checks the combination and that the dates exist, naming the field. (Annotations are inline: with
    # postponed evaluation FastAPI cannot see aliases local to this function.)
    @app.get("/v1/rates", tags=["ledger"], summary="Response, resolution and satisfaction rates / 三率")
    async def rates(
        request: Request,
        unit: Annotated[str, Query(min_length=1, max_length=64, description="responder id or 'community'")]
        = "community",
        month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")] = None,
        from_: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
        to: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="exclusive")] = None,
    ) -> JSONResponse:
        payload = {"unit": unit, "month": month, "from": from_, "to": to}
        return answer(await bus.ask(subjects.QRY_LEDGER_RATES, actor_of(request), payload))

    @app.get("/v1/rates/ranking", tags=["ledger"], summary="Units by combined score: red and black lists / 红黑榜")
    async def ranking(
        request: Request,
        month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")] = None,
        from_: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
        to: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="exclusive")] = None,
    ) -> JSONResponse:
        payload = {"month": month, "from": from_, "to": to}
        return answer(await bus.ask(subjects.QRY_LEDGER_RANKING, actor_of(request), payload))

    @app.post("/v1/whistles/{whistle_id}/verify", tags=["response"], summary="Verify and strike off / 核验销号")
    async def verify(
        request: Request, whistle_id: Annotated[str, Path(max_length=64)],
        body: Annotated[Verification | None, Body()] = None, idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = owned(VerifyWhistle, whistle_id=whistle_id, **(body or Verification()).model_dump())
        if isinstance(payload, JSONResponse):
            return payload
        return answer(await bus.command(subjects.CMD_RESPONSE_VERIFY, actor_of(request), payload,
                                        idempotency_key=idempotency_key))

    @app.post("/v1/whistles/{whistle_id}/erase-reporter", tags=["intake"],
              summary="Erase the reporter's personal data on their request, everywhere (supervisors) / 删除举报人个人信息")
    async def erase_reporter(
        request: Request, whistle_id: Annotated[str, Path(max_length=64)], body: Erasure,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = owned(ReporterErase, whistle_id=whistle_id, reason=body.reason)
        if isinstance(payload, JSONResponse):
            return payload
        return answer(await bus.command(subjects.CMD_INTAKE_REPORTER_ERASE, actor_of(request), payload,
                                        idempotency_key=idempotency_key))

    @app.get("/v1/audit", tags=["ledger"],
             summary="Who did what when in a month (supervisors): CSV, or JSON pages with Accept: application/json"
                     " / 操作审计")
    async def audit(
        request: Request,
        month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM (Beijing time)")],
        system: Annotated[bool, Query(description="true: the services' own events too")] = False,
        limit: Limit = 1000,
        cursor: Cursor = None,
    ) -> Response:
        actor = actor_of(request)
        payload = {"month": month, "system": system, "limit": limit, "cursor": cursor}
        first = await bus.ask(subjects.QRY_LEDGER_AUDIT, actor, payload)
        if wants_json(request) or not first.ok:
            return paged(request, first)

        async def lines() -> AsyncIterator[str]:  # the whole month, a page (one NATS message) at a time
            reply = first
            yield audit_csv(reply.data["items"], header=True)
            while reply.data.get("next_cursor"):
                reply = await bus.ask(subjects.QRY_LEDGER_AUDIT, actor, {**payload, "cursor": reply.data["next_cursor"]})
                if not reply.ok:  # the status is sent: say so in the file rather than end it as if complete
                    yield f"# incomplete: {reply.refusal.code} / 导出未完成\r\n"
                    return
                yield audit_csv(reply.data["items"])

        return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="audit-{month}.csv"'})

    @app.get("/v1/summons", tags=["response"], summary="The caller's own summons / 我的派单")
    async def list_summons(request: Request, limit: Limit = 100, cursor: Cursor = None) -> JSONResponse:
        payload = owned(SummonsPage, limit=limit, cursor=cursor)
        if isinstance(payload, JSONResponse):
            return payload
        return paged(request, await bus.ask(subjects.QRY_RESPONSE_SUMMONS, actor_of(request), payload))

    @app.post("/v1/summons/{summons_id}/extension", tags=["response"], summary="Ask for more time / 申请延期")
    async def ask_extension(
        request: Request, summons_id: Annotated[str, Path(max_length=64)], body: ExtensionAsk,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = owned(ExtensionRequest, summons_id=summons_id, **body.model_dump())
        if isinstance(payload, JSONResponse):
            return payload
        return answer(await bus.command(subjects.CMD_RESPONSE_EXTENSION, actor_of(request), payload,
                                        idempotency_key=idempotency_key))

    @app.post("/v1/summons/{summons_id}/extension/{decision}", tags=["response"],
              summary="Grant or refuse an extension (supervisors) / 审批延期")
    async def decide_extension(
        request: Request, summons_id: Annotated[str, Path(max_length=64)], decision: Literal["grant", "refuse"],
        body: Annotated[Note | None, Body()] = None, idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = owned(ExtensionDecision, summons_id=summons_id, decision=decision, note=(body or Note()).note)
        if isinstance(payload, JSONResponse):
            return payload
        return answer(await bus.command(subjects.CMD_RESPONSE_EXTENSION_DECISION, actor_of(request), payload,
                                        idempotency_key=idempotency_key))

    @app.post("/v1/summons/{summons_id}/{action}", tags=["response"],
              summary="Report / arrive / resolve; pause and resume while waiting on the resident; "
                      "return (退单, with reason_code) or transfer (转派, with to_responder_id and reason)")
    async def act(
        request: Request,
        summons_id: Annotated[str, Path(max_length=64)],
        action: SummonsMove,
        body: Annotated[Move | None, Body()] = None, idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        try:
            move = SummonsAction(summons_id=summons_id, action=action, **(body or Move()).model_dump(exclude_none=True))
        except ValidationError as exc:
            r = refusal_from(exc)
            return error(r.status, r.code, r.reason, r.field)
        if move.action is SummonsMove.transfer:  # the target must exist before anything is handed over
            target = await bus.ask(subjects.QRY_ROUTING_RESPONDER, actor_of(request), {"id": move.to_responder_id})
            if not target.ok:
                return error(422 if target.refusal.status == 404 else target.refusal.status, target.refusal.code,
                             target.refusal.reason, "to_responder_id")
            if target.data.get("kind") == ResponderKind.command_centre:
                return error(422, "not_summonable", NOT_SUMMONABLE, "to_responder_id")
        return answer(await bus.command(subjects.CMD_RESPONSE_ACT, actor_of(request), move.model_dump(mode="json"),
                                        idempotency_key=idempotency_key))

    @app.get("/v1/whistles/{whistle_id}/routing", tags=["routing"],
             summary="Which rule routed the whistle and why each candidate was chosen or skipped")
    async def routing_explained(request: Request, whistle_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_ROUTING_EXPLAIN, actor_of(request), {"id": whistle_id}))

    @app.post("/v1/whistles/{whistle_id}/arbitrate", tags=["routing"],
              summary="Name who handles a twice-returned whistle (supervisors) / 审定")
    async def arbitrate(
        request: Request, whistle_id: Annotated[str, Path(max_length=64)], body: Arbitration,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = {"whistle_id": whistle_id, **body.model_dump()}
        return answer(await bus.command(subjects.CMD_ROUTING_ARBITRATE, actor_of(request), payload,
                                        idempotency_key=idempotency_key))

    @app.post("/v1/whistles/{whistle_id}/follow-up", tags=["response"],
              summary="Record the resident's follow-up (dispatchers) / 回访; not solved or dissatisfied reopens it")
    async def follow_up(
        request: Request, whistle_id: Annotated[str, Path(max_length=64)], body: FollowUp,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = owned(FollowUpAnswer, whistle_id=whistle_id, **body.model_dump())
        if isinstance(payload, JSONResponse):
            return payload
        return answer(await bus.command(subjects.CMD_RESPONSE_FOLLOW_UP, actor_of(request), payload,
                                        idempotency_key=idempotency_key))

    @app.get("/v1/responders", tags=["routing"], summary="The responder registry / 响应单位名册")
    async def list_responders(
        request: Request,
        kind: Annotated[Literal["member", "section", "department", "command_centre"] | None, Query()] = None,
        branch: Annotated[str | None, Query(max_length=16)] = None,
        building: Annotated[str | None, Query(max_length=16)] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000, description="Rows skipped after the cursor")] = 0,
    ) -> JSONResponse:
        payload = {"kind": kind, "branch": branch, "building": building, "limit": limit, "cursor": cursor,
                   "offset": offset}
        reply = await bus.ask(subjects.QRY_ROUTING_RESPONDERS, actor_of(request), payload)
        return paged(request, reply, lambda data: {"total": data["total"], "responders": data["items"]})

    @app.get("/v1/responders/{responder_id}", tags=["routing"], summary="One responder")
    async def get_responder(request: Request, responder_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_ROUTING_RESPONDER_ONE, actor_of(request), {"id": responder_id}))

    @app.put("/v1/responders/{responder_id}", tags=["routing"],
             summary="Create or replace a responder (supervisors); a new one gets its bearer token")
    async def put_responder(
        request: Request, responder_id: Annotated[str, Path(max_length=64)], body: ResponderIn,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        reply = await bus.command(subjects.CMD_ROUTING_RESPONDER_PUT, actor_of(request),
                                  {"id": responder_id, **body.model_dump()}, idempotency_key=idempotency_key)
        if reply.ok and reply.data.get("created"):
            reply.data["token"] = auth.mint(keys, "responder", responder_id, ttl_s=settings.token_ttl_s)
        if reply.ok and not body.active:  # this gateway refuses its tokens at once, the others by routing's notice
            revocations.apply("active", (responder_id, False))  # (active again: by the notice, never a replayed reply)
        return answer(reply, 201 if reply.ok and reply.data.get("created") else 200)

    @app.put("/v1/responders/{responder_id}/contacts", tags=["notifier"],
             summary="How a responder is reached (supervisors, or the responder itself) / 联系规则")
    async def put_contacts(
        request: Request, responder_id: Annotated[str, Path(max_length=64)], body: ContactRule,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = {"id": responder_id, "rule": body.model_dump(mode="json")}
        return answer(await bus.command(subjects.CMD_NOTIFIER_CONTACTS_PUT, actor_of(request), payload,
                                        idempotency_key=idempotency_key))

    @app.get("/v1/responders/{responder_id}/contacts", tags=["notifier"],
             summary="A responder's contact rule, or the community default it falls back on")
    async def get_contacts(request: Request, responder_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_NOTIFIER_CONTACTS, actor_of(request), {"id": responder_id}))

    @app.get("/v1/notifications", tags=["notifier"],
             summary="Notifications and each delivery attempt, newest first (dispatchers, supervisors) / 通知记录")
    async def notifications(
        request: Request,
        whistle_id: Annotated[str | None, Query(max_length=64)] = None,
        responder_id: Annotated[str | None, Query(max_length=64, description="The recipient")] = None,
        state: Annotated[Literal["pending", "delivered", "failed", "cancelled"] | None, Query()] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> JSONResponse:
        payload = {"whistle_id": whistle_id, "responder_id": responder_id, "state": state, "limit": limit,
                   "cursor": cursor}
        return paged(request, await bus.ask(subjects.QRY_NOTIFIER_NOTIFICATIONS, actor_of(request), payload))

    @app.get("/r/{token}", tags=["residents"],
             summary="A resident's one-time follow-up link / 回访链接: JSON, or the form page for a browser")
    async def resident_link(
        request: Request, token: Annotated[str, Path(min_length=8, max_length=64)],
        lang: Annotated[Literal["zh", "en"], Query()] = "zh",
    ) -> Response:
        payload = owned(FollowUpLink, token=token)
        if isinstance(payload, JSONResponse):
            return payload
        reply = await bus.ask(subjects.QRY_RESPONSE_FOLLOW_UP_LINK, RESIDENT, payload)
        return resident_page(reply, token, lang) if wants_html(request) else answer(reply)

    @app.post("/r/{token}", tags=["residents"], summary="The resident answers the follow-up, once / 居民回访")
    async def resident_answer(
        token: Annotated[str, Path(min_length=8, max_length=64)], body: FollowUp,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        payload = owned(FollowUpAnswer, token=token, **body.model_dump())
        if isinstance(payload, JSONResponse):
            return payload
        return answer(await bus.command(subjects.CMD_RESPONSE_FOLLOW_UP, RESIDENT, payload,
                                        idempotency_key=resident_key(token, idempotency_key)))

    @app.get("/v1/policies", tags=["escalation"], summary="SLA policies and ladders in force")
    async def policies(request: Request) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_ESCALATION_POLICIES, actor_of(request)))

    @app.post("/v1/api-keys", tags=["open311"], status_code=201,
              summary="Issue an Open311 API key to a client (supervisors); shown once")
    async def issue_api_key(request: Request, body: ApiKeyIn, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        return answer(await bus.command(subjects.CMD_INTAKE_API_KEY_ISSUE, actor_of(request), body.model_dump(),
                                        idempotency_key=idempotency_key), 201)

    @app.delete("/v1/api-keys/{client}", tags=["open311"],
                summary="Revoke every API key of an Open311 client (supervisors); its requests then get 403")
    async def revoke_api_keys(
        request: Request, client: Annotated[str, Path(max_length=64)], idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return answer(await bus.command(subjects.CMD_INTAKE_API_KEY_REVOKE, actor_of(request), {"client": client},
                                        idempotency_key=idempotency_key))

    app.include_router(open311_router(bus, settings))
    app.include_router(links_router(bus, secret))  # /a/{token}, the resident's form post
    # the console's pages sign people in with a session cookie; the edge leaves /console/ to them
    mount_console(app, bus, secret, revocations=revocations)
    app.include_router(tokens_router(bus, keys, revocations, settings.token_ttl_s))

    @app.get("/v1/dead-letters", tags=["ops"], summary="Dead-lettered messages, newest first (supervisors) / 死信")
    async def dead_letters(
        request: Request,
        replayed: Annotated[bool | None, Query(description="true: replayed at least once; false: never")] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> JSONResponse:
        payload = {"replayed": replayed, "limit": limit, "cursor": cursor}
        return paged(request, await bus.ask(subjects.QRY_LEDGER_DEADLETTERS, actor_of(request), payload))

    @app.get("/v1/dead-letters/{dead_letter_id}", tags=["ops"], summary="One dead letter (supervisors)")
    async def dead_letter(request: Request, dead_letter_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
        return answer(await bus.ask(subjects.QRY_LEDGER_DEADLETTER, actor_of(request), {"id": dead_letter_id}))

    @app.post("/v1/dead-letters/{dead_letter_id}/replay", tags=["ops"], status_code=202,
              summary="Put the message back on its subject for the consumer that failed it (supervisors) / 重放死信")
    async def replay_dead_letter(
        request: Request, dead_letter_id: Annotated[str, Path(max_length=64)], idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        reply = await bus.command(subjects.CMD_LEDGER_DEADLETTER_REPLAY, actor_of(request), {"id": dead_letter_id},
                                  idempotency_key=idempotency_key)
        return answer(reply, 202)

    return app
