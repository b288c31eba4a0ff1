"""Bearer tokens over the API: revoke one, revoke all of a responder's, issue a responder a fresh one.

Routing owns the revocation list (a command each, refused or recorded there); the gateway holds the
signing keys, so it reads a token's jti and expiry before asking, and mints new ones itself. Once
routing confirms, the change is applied to this gateway's list at once (the caller's next request is
refused), and routing's notice carries it to every other gateway within a second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.revocations import Revocations
from shared import auth, subjects
from shared.contracts import Reply

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=128,
    description="Any string of 1–128 characters; a retry with the same key gets the first answer, not a second effect",
)]
ResponderId = Annotated[str, Path(max_length=64)]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    token: str = Field(min_length=1, max_length=2048, description="The bearer token to revoke")


def _error(status: int, code: str, reason: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "reason": reason, "field": field}})


def _answer(reply: Reply, status: int = 200) -> JSONResponse:
    if reply.ok:
        return JSONResponse(status_code=status, content=reply.data)
    r = reply.refusal
    return _error(r.status, r.code, r.reason, r.field)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def build_router(bus, keys: auth.KeyRing, revocations: Revocations, ttl_s: float) -> APIRouter:
    router = APIRouter(tags=["tokens"])

    @router.post("/v1/tokens/revoke", summary="Revoke one bearer token (supervisors, or the token's own holder)"
                 " / 吊销令牌; it gets 401 from the next request on")
    async def revoke_token(request: Request, body: TokenIn, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        claims = auth.decode(keys, body.token)  # expired or not: revoking an expired token is harmless
        if claims is None:
            return _error(422, "not_a_token", "not a bearer token of this system / 不是本系统签发的令牌", "token")
        payload = {"jti": claims.jti, "role": claims.role, "subject_id": claims.sub,
                   "expires_at": datetime.fromtimestamp(claims.exp, UTC).isoformat()}
        reply = await bus.command(subjects.CMD_ROUTING_TOKEN_REVOKE, request.state.actor, payload,
                                  idempotency_key=idempotency_key)
        if reply.ok:
            revocations.apply("jti", claims.jti)
        return _answer(reply)

    @router.post("/v1/responders/{responder_id}/revoke-tokens",
                 summary="Revoke every token a responder was issued until now (supervisors) / 吊销该响应方全部令牌;"
                 " its console sessions end too")
    async def revoke_responder_tokens(request: Request, responder_id: ResponderId,
                                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
        reply = await bus.command(subjects.CMD_ROUTING_RESPONDER_TOKENS_REVOKE, request.state.actor,
                                  {"id": responder_id}, idempotency_key=idempotency_key)
        if reply.ok:
            revocations.apply("not_before", (responder_id, _epoch(reply.data["not_before"])))
        return _answer(reply)

    @router.post("/v1/responders/{responder_id}/tokens", status_code=201,
                 summary="Issue a responder a fresh bearer token (supervisors), e.g. after revoking its old ones"
                 " / 重新签发令牌; shown once")
    async def issue_token(request: Request, responder_id: ResponderId) -> JSONResponse:
        actor = request.state.actor
        if actor.role != "supervisor":
            return _error(403, "supervisor_only", "supervisors only / 仅限督办")
        found = await bus.ask(subjects.QRY_ROUTING_RESPONDER_ONE, actor, {"id": responder_id})
        if not found.ok:
            return _answer(found)
        # routing's record, or this gateway's list (told of a deactivation a moment ago, maybe before routing's copy)
        if not found.data.get("active", True) or responder_id in revocations.inactive:
            return _error(409, "responder_inactive", "the responder is deactivated / 该响应方已停用")
        # issued after any "not before" this gateway knows, even within the same millisecond
        now = max(datetime.now(UTC).timestamp(), revocations.not_before.get(responder_id, 0.0) + 0.002)
        token = auth.mint(keys, "responder", responder_id, ttl_s=ttl_s, now=now)
        claims = auth.decode(keys, token)
        return JSONResponse(status_code=201, content={
            "responder_id": responder_id, "token": token, "kid": claims.kid,
            "expires_at": datetime.fromtimestamp(claims.exp, UTC).isoformat()})

    return router
