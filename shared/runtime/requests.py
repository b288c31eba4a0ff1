"""Answering the gateway's requests: a service declares each one as data (`Request`), and the runtime
validates the payload and the caller's role, refusing in one way, before the handler runs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import nats
from nats.aio.msg import Msg
from pydantic import BaseModel, ConfigDict, ValidationError

from shared import telemetry
from shared.contracts import Command, Event, Reply, Role
from shared.db import (
    OutboxMessage,
    Queued,
)
from shared.ids import utcnow
from shared.runtime.replies import EXPIRED, IDEMPOTENCY_CONFLICT, TOO_LARGE, decoded, unavailable
from shared.runtime.together import BatchHandler, GroupCommit, Together
from shared.signing import Verifier
from shared.validation import refusal_from

T = TypeVar("T")
Effects = list[Event | OutboxMessage]

RequestHandler = Callable[[asyncpg.Connection, Command, datetime], Awaitable[tuple[Reply, Effects]]]
QueryHandler = Callable[[asyncpg.Pool, Command], Awaitable[Reply]]

if TYPE_CHECKING:
    from shared.runtime.service import ServiceRuntime


ROLE_NAMES = {"dispatcher": ("dispatchers", "调度员"), "supervisor": ("supervisors", "督办"),
              "responder": ("responders", "响应方"), "resident": ("residents", "居民"), "system": ("services", "系统")}


class NoPayload(BaseModel):
    """A request that takes nothing but its caller."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Request:
    """One request a service answers, as data: the runtime validates `payload` (422 naming the field)
    and the caller's role (403) before `handle` runs, and documents both in the AsyncAPI document.

    A command (`query=False`) gets a connection inside a transaction and returns (reply, effects);
    a query gets the pool and returns a reply. `roles` None: any caller the gateway let through.
    A command served `together` is group-committed (shared/runtime/together.py): its handler gets the
    commands of a batch and returns one (reply, effects) each."""

    subject: str
    handle: RequestHandler | QueryHandler | BatchHandler
    payload: type[BaseModel] = NoPayload
    roles: frozenset[Role] | None = None
    query: bool = False
    together: Together | None = None

    def __post_init__(self) -> None:
        if self.roles is not None:
            object.__setattr__(self, "roles", frozenset(self.roles))
        if self.together is not None and self.query:
            raise ValueError(f"{self.subject}: a query is not group-committed")


def forbidden(roles: frozenset[str]) -> Reply:
    """The one refusal of a caller whose role may not make the request."""
    people = [r for r in ROLE_NAMES if r in roles and r != "system"] or ["system"]
    code = "supervisor_only" if people == ["supervisor"] else "forbidden"
    en = " and ".join(ROLE_NAMES[r][0] for r in people)
    zh = "和".join(ROLE_NAMES[r][1] for r in people)
    return Reply.refuse(403, code, f"{en} only / 仅限{zh}")


def typed(request: Request, body: Any) -> Command | Reply:
    """A command (its signature checked) with its payload typed, or the refusal: 422 naming the field, or
    403 for the role."""
    try:
        command = Command.model_validate(body)
    except ValidationError as exc:
        return Reply(ok=False, refusal=refusal_from(exc))
    if request.roles is not None and command.actor.role not in request.roles:
        return forbidden(request.roles)
    try:
        command.payload = request.payload.model_validate(command.payload)
    except ValidationError as exc:
        return Reply(ok=False, refusal=refusal_from(exc))
    return command


class Answering:
    """The request side of a `ServiceRuntime`. `verifier` holds the signers' public keys: without it every
    request is refused (a runtime without keys does not start)."""

    verifier: Verifier | None = None
    together: list[GroupCommit]  # the group-committed requests, started after the relay and stopped first
    answering: list[Request]  # the others, answered as they come
    _request_subs: list
    _answers: set[asyncio.Task]

    def serve(self, *requests: Request) -> None:
        """Answer each request on its subject, several at once (a slow query must not queue every
        other caller behind it; commands lock the rows they change, so they may overlap too)."""
        for request in requests:
            self._serve(request)

    def _serve(self, request: Request) -> None:
        self.served.append(request.subject)
        self._document(request)
        if request.together is not None:
            self.together.append(GroupCommit(request, self))  # type: ignore[arg-type]
            return
        self.answering.append(request)

    async def _start_answering(self, nc: nats.NATS) -> None:
        """Take each request (queue group: the service's name), `request_workers` answered at once.
        Straight on nats-py, as the consumers and the group-committed requests are: FastStream's
        subscriber (its middlewares, dependency solving, task group) was 29% of response's CPU per
        request at a district's peak (py-spy, bench/README.md session 23)."""
        self._workers = asyncio.Semaphore(self.settings.request_workers)
        for request in self.answering:
            # pending limits well above any burst the gateways can send (nats-py's 512 KiB default drops messages)
            self._request_subs.append(await nc.subscribe(
                request.subject, queue=self.name, cb=functools.partial(self._on_request, request),
                pending_msgs_limit=100_000, pending_bytes_limit=256 * 1024 * 1024))

    async def _stop_answering(self) -> None:
        """Take no more requests; answer those taken."""
        for sub in self._request_subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._request_subs.clear()
        if self._answers:
            await asyncio.wait(set(self._answers), timeout=10)

    async def _on_request(self, request: Request, msg: Msg) -> None:
        task = asyncio.create_task(self._answer_one(request, msg))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer_one(self, request: Request, msg: Msg) -> None:
        async with self._workers:
            started = time.perf_counter()
            body = decoded(msg.data)
            reply = body if isinstance(body, Reply) else await self._answer(request, body)
            outcome = "ok" if reply.ok else "refused"
            telemetry.COMMANDS.labels(self.name, request.subject, outcome).inc()
            # one canonical line per command; queries only at debug level
            actor = body.get("actor") if isinstance(body, dict) else None
            (self.log.debug if request.query else self.log.info)(
                "request", subject=request.subject, actor=str(actor.get("id", "?")) if isinstance(actor, dict) else "?",
                outcome=outcome, code=reply.refusal.code if reply.refusal else None,
                ms=round((time.perf_counter() - started) * 1e3, 2),
            )
            if msg.reply:
                with contextlib.suppress(Exception):  # the gateway gave up (timeout) or NATS is gone
                    await msg.respond(self._fitting(reply, request.query))

    def _document(self, request: Request) -> None:
        """The request's entry in the AsyncAPI document: its typed envelope and its handler's doc."""
        description = (request.handle.__doc__ or "").strip()

        async def documented(body: Any) -> Reply:  # never called: the AsyncAPI entry only
            raise NotImplementedError

        # the typed envelope, as FastStream reads a handler's signature for the document
        documented.__annotations__ = {"body": Command[request.payload], "return": Reply}

        self.spec_broker.subscriber(request.subject, queue=self.name, title=f"{self.name}:{request.subject}",
                                    description=description)(documented)

    def _fitting(self, reply: Reply, query: bool) -> bytes:
        """The reply as it goes on the wire: one NATS message, or what says it would not fit (a refusal echoing a
        large request back, a query asked for too much) instead of an answer that never arrives."""
        raw = reply.model_dump_json().encode()
        room = self._nc.max_payload if self._nc is not None else 1024 * 1024
        if len(raw) <= room:
            return raw
        if reply.ok and not query:  # carried out and committed: say so, without the details
            return Reply.success({"note": "done; the answer is too large to send / 已完成，结果过大未返回"}) \
                .model_dump_json().encode()
        return TOO_LARGE.model_dump_json().encode()

    def admit(self, request: Request, body: Any) -> Command | Reply:
        """The command with its payload typed, or the refusal: 401 unless the gateway (or a service, as the
        system) signed it for this subject, 422 naming the field, or 403 for the role."""
        if (refused := (self.verifier or NO_KEYS).check(request.subject, body)) is not None:
            return refused
        return typed(request, body)

    async def _forget_old_replies(self, _: ServiceRuntime) -> None:
        """Replies kept for Idempotency-Key retries live a day."""
        assert self.pool is not None
        await self.pool.execute("DELETE FROM command_replies WHERE created_at < now() - interval '1 day'")

    async def _answer(self, request: Request, body: Any) -> Reply:
        command = self.admit(request, body)
        if isinstance(command, Reply):
            return command
        subject, handle = request.subject, request.handle
        assert self.pool is not None
        try:
            if request.query:
                return await handle(self.pool, command)
            now = utcnow()
            if command.expires_at is not None and now > command.expires_at:
                return EXPIRED  # the gateway has answered 504: doing it now would surprise the client
            key = (str(command.actor), command.idempotency_key) if command.idempotency_key else None
            async with self.pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                queued: list[Queued] = []
                effects: Effects = []
                try:
                    first = key and await conn.fetchrow(
                        "SELECT subject, reply FROM command_replies WHERE actor = $1 AND key = $2", *key)
                    if first:
                        await transaction.rollback()
                        return _replayed(first, subject)
                    reply, effects = await handle(conn, command, now)
                    if reply.ok and key:
                        # a twin with the same key committed meanwhile: its reply is the answer
                        stored = await conn.fetchval(
                            "INSERT INTO command_replies (actor, key, subject, reply) VALUES ($1, $2, $3, $4)"
                            " ON CONFLICT DO NOTHING RETURNING true", *key, subject, reply.model_dump(mode="json"))
                        if not stored:
                            await transaction.rollback()
                            first = await conn.fetchrow(
                                "SELECT subject, reply FROM command_replies WHERE actor = $1 AND key = $2", *key)
                            return _replayed(first, subject)
                    if reply.ok:
                        queued = await self.emit(conn, effects)
                        await transaction.commit()
                    else:
                        await transaction.rollback()  # a refused request changes nothing
                except BaseException:
                    with contextlib.suppress(Exception):  # already ended, or the connection is gone
                        await transaction.rollback()
                    raise
            if effects and reply.ok:
                self.relay.handoff(queued)
            return reply
        except Exception:
            self.log.exception("request.failed", subject=subject)
            return unavailable(self.name)



NO_KEYS = Verifier({})  # knows no signer: refuses everything


def _replayed(first: asyncpg.Record, subject: str) -> Reply:
    """The first reply to a command sent again with its Idempotency-Key."""
    if first["subject"] != subject:
        return IDEMPOTENCY_CONFLICT
    return Reply.model_validate(first["reply"])


