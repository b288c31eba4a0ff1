"""The outbox relay: publishes committed outbox rows to JetStream with Nats-Msg-Id, then deletes them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque

import asyncpg
import nats
import nats.errors
import structlog
from nats.aio.msg import Msg

from shared import subjects, telemetry
from shared.db import Queued

log = structlog.get_logger("relay")
POLL_S = 0.5  # how often the table is read while rows come handed over (others' rows, retries)
FORGET_AFTER_S = 0.1  # published rows are deleted together, at most this long after the first of them
BACKOFF_FIRST_S, BACKOFF_MOST_S = 0.5, 10.0  # restarts after an error
HOLDER_CHECK_S = 2.0  # how often the connection holding the lock is checked (a restart ends it)
DEAD_LETTER_BODY = 512 * 1024  # a set-aside row's body as its dead letter carries it (whole in outbox_dead)


class PublishRefused(RuntimeError):
    """JetStream did not store a message (no stream for the subject, a limit, an error)."""


class PublishFailed(RuntimeError):
    """A batch could not be sent or acknowledged as a whole (NATS away, a timeout): try it all again."""


class PipelinedPublisher:
    """JetStream publishes pipelined over core NATS: one reply subject per message, one subscription
    counting the acknowledgements. Does what `publish_async` + `gather` did at about half the CPU
    per message (no future, callback and ack object per message).

    `publish` returns the messages refused one by one (index, why): one that would break the
    protocol or is over the server's max_payload is not sent at all, one JetStream answers with an
    error was not stored; the others were stored. A fault of the whole batch raises (NATS away, an
    ack missing): the caller sends it all again, and Nats-Msg-Id makes the copies harmless."""

    def __init__(self, nc: nats.NATS):
        self._nc = nc
        self._prefix = ""
        self._tag = ""
        self._batches = 0
        self._left = 0
        self._refused: list[tuple[int, str]] = []
        self._done = asyncio.Event()
        self.duplicates = 0  # messages JetStream had already stored (same Nats-Msg-Id in its window)

    async def publish(self, messages: list[tuple[str, bytes, dict[str, str]]], timeout: float) -> list[tuple[int, str]]:
        if not messages:
            return []
        if self._nc.is_closed or self._nc.is_draining_pubs or not self._nc.is_connected:
            raise PublishFailed("NATS is not connected")
        if not self._prefix:
            self._prefix = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._prefix}.>", cb=self._on_ack)
        self._batches += 1
        self._tag = f"{self._prefix}.{self._batches}."  # a late ack of an earlier batch is ignored
        commands, refused = [], []
        for i, m in enumerate(messages):
            try:
                commands.append(_hpub(m, f"{self._tag}{i}", self._nc.max_payload))
            except PublishRefused as exc:  # the server would drop the connection or misread the stream
                refused.append((i, str(exc)))
        self._left, self._refused = len(commands), []
        self._done.clear()
        if commands:
            try:
                await self._nc._send_command(b"".join(commands))
                await self._nc.flush(timeout=max(1, int(timeout)))
                await asyncio.wait_for(self._done.wait(), timeout)
            except Exception as exc:
                raise PublishFailed(f"{len(commands)} messages sent, {self._left} not acknowledged: {exc!r}") from exc
        return sorted(refused + self._refused)

    async def _on_ack(self, msg: Msg) -> None:
        if not msg.subject.startswith(self._tag):
            return
        status = (msg.headers or {}).get("Status")
        if status or b'"error"' in msg.data:  # 503: no stream listens; {"error": …}: refused
            index = int(msg.subject.rsplit(".", 1)[1])
            self._refused.append((index, status and f"status {status}" or msg.data[:300].decode(errors="replace")))
        elif b'"duplicate"' in msg.data:  # {…,"duplicate": true}
            self.duplicates += 1
        self._left -= 1
        if self._left <= 0:
            self._done.set()


def _hpub(message: tuple[str, bytes, dict[str, str]], reply: str, max_payload: int) -> bytes:
    """One HPUB protocol command, as nats-py's `publish` makes it (nats.protocol.command.hpub_cmd)
    without its per-header regex and per-message writes: the batch goes in as one command. Measured
    here (py-spy, timers bench): `Client.publish` was 11% of escalation's CPU while arming."""
    subject, body, headers = message
    head = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    # a CR or LF inside a header, or a subject empty or with a blank, would break the protocol stream
    lines = len(headers) + 2
    if head.count("\n") != lines or head.count("\r") != lines or len(subject.split()) != 1:
        raise PublishRefused(f"cannot publish on {subject!r} with headers {headers!r}")
    hdr = head.encode()
    size = len(hdr) + len(body)
    if size > max_payload:
        raise PublishRefused(f"a message of {size} bytes is over the server's max_payload of {max_payload}")
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subject.encode(), reply.encode(), len(hdr), size, hdr, body)


FORWARD_FRESH_S = 1.0  # a forward older than this is dropped: its rows were read from the table, or will be
FORWARD_ROOM = 10_000  # handed rows past which a forward is left to the table (memory stays bounded: the
# other replicas' consumers cannot wait for this relay's room as its own process's do)


def pack(rows: list[Queued], sent: float) -> bytes:
    """Outbox rows as one core NATS message: the length of a JSON head (when it was sent, and each row's
    seq, subject, headers and body size), the head, then the bodies one after another."""
    head = json.dumps({"sent": sent, "rows": [[r.seq, r.subject, r.headers, len(r.body)] for r in rows]}).encode()
    return len(head).to_bytes(4, "big") + head + b"".join(r.body for r in rows)


def unpack(data: bytes) -> tuple[float, list[Queued]]:
    """(when it was sent, the rows) of a `pack`ed message; ValueError if it is not one."""
    size = int.from_bytes(data[:4], "big")
    try:
        head = json.loads(data[4:4 + size])
        rows, at = [], 4 + size
        for seq, subject, headers, length in head["rows"]:
            rows.append(Queued(int(seq), str(subject), data[at:at + length], dict(headers)))
            at += length
        sent = float(head["sent"])
    except (TypeError, KeyError, ValueError) as exc:  # json's errors are ValueErrors
        raise ValueError(f"not a forward: {exc!r}") from exc
    if at != len(data):
        raise ValueError(f"{len(data) - at} bytes after the last row")
    return sent, rows


class OutboxRelay:
    """One relay per service schema; a Postgres advisory lock keeps it single among replicas.

    The leader publishes what its own process commits straight from memory (`handoff`), and what the
    other replicas commit too: their relays, not leading, forward the rows they are handed to it over
    core NATS (`relay.<service>`, which only it listens to), once committed. It reads the table for the
    rest: rows whose forward was lost (no leader then, NATS away), rows committed while the table came
    first, rows left by a crash or a failed publish, every `POLL_S`. (Other replicas used to NOTIFY
    through Postgres: every notifying commit takes one lock for the whole database, every listening
    backend is woken, and the leader read the table each time; at a district's peak with two replicas
    that was 12–25% of Postgres's CPU, bench/README.md session 23.) Published rows are deleted
    together, before the next table read and at most `FORGET_AFTER_S` after the first of them: one
    statement for every few batches, not one each (a crash in between only publishes them again, and
    their Nats-Msg-Id makes the copies no-ops).
    A row read from the table just before its hand-off arrives is published once: the last reads'
    seqs are remembered (and should one slip through, its Nats-Msg-Id makes the copy a no-op).

    Whenever rows may be waiting in the table (at start, after a failed publish or any error) it
    drains the table before taking hand-offs again: rows go out in commit order, so an older
    clock timer never replaces a newer one. Any error restarts it after a backoff (`problem` says
    why meanwhile); a row JetStream will never take is set aside with its reason (`outbox_dead`,
    and a dead letter) so the rows behind it go on.
    """

    def __init__(self, pool: asyncpg.Pool, nc: nats.NATS, service: str, *, batch: int = 1000):
        self._pool = pool
        self._nc = nc
        self._publisher = PipelinedPublisher(nc)
        self._service = service
        self._batch = batch
        self._wake = asyncio.Event()
        self._stopped = False
        self._handed: deque[Queued] = deque()
        self._read: deque[set[int]] = deque(maxlen=4)  # seqs the last table reads published
        self._gone: list[int] = []  # seqs published and not yet deleted
        self._gone_since = 0.0  # when the first of them was published
        self._notified = True  # read the table at the next turn (at start, an unreadable forward)
        self._table_first = True  # rows may wait in the table: drain it before publishing hand-offs
        self._published = asyncio.Event()  # handed rows went out (a consumer may be waiting for room)
        self.leading = False  # this process's relay holds the lock: its commits hand it their rows
        self.problem: str | None = None  # why the relay is not publishing, while it is not
        self._forwards: deque[list[Queued]] = deque()  # rows to forward to the leader, in commit order
        self._forwarder: asyncio.Task | None = None

    def handoff(self, rows: list[Queued]) -> None:
        """Rows this process has just committed: published from memory, not read back (or, while the
        table comes first, read there at the next turn); forwarded to the leader when this relay does
        not lead. A batch that queued nothing wakes nobody."""
        if not rows:
            return
        if not self.leading:
            self._forwards.append(rows)
            if self._forwarder is None or self._forwarder.done():
                self._forwarder = asyncio.get_running_loop().create_task(self._forward())
            return
        if not self._table_first:
            if self._read:
                rows = [r for r in rows if not any(r.seq in seqs for seqs in self._read)]
            self._handed.extend(rows)
        else:
            self._notified = True
        self._wake.set()

    async def _forward(self) -> None:
        """Send the rows handed here to the leading relay, in order, as few messages as fit. Lost (no
        leader listening, NATS away) they are still in the table: the leader's next read publishes them."""
        subject = f"{subjects.RELAY_FORWARD}.{self._service}"
        while self._forwards:
            rows = [r for batch in self._forwards for r in batch]
            self._forwards.clear()
            try:
                if not self._nc.is_connected:  # not buffered for later: by then the table was read
                    continue
                room = self._nc.max_payload - 4096
                chunk: list[Queued] = []
                size = 0
                for row in rows:
                    if chunk and size + len(row.body) > room:
                        await self._nc.publish(subject, pack(chunk, time.time()))
                        chunk, size = [], 0
                    chunk.append(row)
                    size += len(row.body) + 100
                await self._nc.publish(subject, pack(chunk, time.time()))
            except Exception as exc:  # noqa: BLE001  (in the table: read there)
                log.info("relay.forward_failed", service=self._service, rows=len(rows), error=repr(exc))

    async def _on_forwarded(self, msg: Msg) -> None:
        """Rows another replica committed, for this relay to publish while it leads. One that comes late
        (held up in a client's buffer while NATS was away) is dropped: the table has been read since, and
        its rows, published and deleted then, must not go out again (an old clock timer would replace a
        newer one)."""
        if not self.leading:
            return
        try:
            sent, rows = unpack(msg.data)
        except ValueError as exc:  # not ours to drop: the rows are in the table
            log.warning("relay.forward_unreadable", service=self._service, error=repr(exc))
            self._notified = True
            self._wake.set()
            return
        if abs(time.time() - sent) > FORWARD_FRESH_S or len(self._handed) > FORWARD_ROOM:  # the table it is, then
            log.info("relay.forward_left_to_the_table", service=self._service, rows=len(rows),
                     age_s=round(time.time() - sent, 3), handed=len(self._handed))
            self._notified = True
            self._wake.set()
            return
        self.handoff(rows)

    async def room(self, most: int) -> None:
        """Wait while more than `most` handed rows wait to go out: consumers must not outrun the
        relay, whose backlog is held in memory (measured: 1,000,000 clocks armed by overlapping
        batches left escalation at 361 MB without this, against 77 MB before the overlap)."""
        while self.leading and len(self._handed) > most:
            self._published.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), timeout=1.0)

    async def run(self) -> None:
        """Lead and publish until stopped; after any error (the database restarted, a bug), again
        after a backoff, from the table."""
        backoff = BACKOFF_FIRST_S
        while not self._stopped:
            started = time.monotonic()
            try:
                await self._lead()
            except Exception as exc:
                if self._stopped:
                    break
                if time.monotonic() - started > 60:
                    backoff = BACKOFF_FIRST_S  # it had been working: this is a new fault
                self.problem = f"relay restarting after {exc!r}"[:300]
                telemetry.RELAY_ERRORS.labels(self._service).inc()
                log.warning("relay.failed", service=self._service, error=repr(exc), restart_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MOST_S)

    async def _lead(self) -> None:
        holder = await self._pool.acquire()
        forwarded = None
        try:
            while not await holder.fetchval("SELECT pg_try_advisory_lock(hashtext(current_schema() || '.relay'))"):
                if self._stopped:
                    return
                await asyncio.sleep(2.0)
            # before the first table read: a row committed after it comes forwarded
            forwarded = await self._nc.subscribe(f"{subjects.RELAY_FORWARD}.{self._service}", cb=self._on_forwarded)
            self._table_first, self.leading = True, True
            last_read = last_check = 0.0
            while not self._stopped:
                if time.monotonic() - last_check > HOLDER_CHECK_S:  # its lock goes with its session
                    last_check = time.monotonic()
                    await holder.fetchval("SELECT 1", timeout=5)
                if self._table_first:
                    self._handed.clear()  # committed, so in the table: read there, in order
                    read = await self._drain_once()
                    if read is None:
                        continue  # not published: again, still table first
                    if read < self._batch:
                        self._table_first = False  # drained: later commits come handed over
                        self._published.set()
                    last_read = time.monotonic()
                    continue
                published = await self._publish_handed() if self._handed else 0
                if self._notified or time.monotonic() - last_read > POLL_S:
                    self._notified, last_read = False, time.monotonic()
                    published += await self._drain_once() or 0
                elif self._gone and time.monotonic() - self._gone_since >= FORGET_AFTER_S:
                    await self._forget_published()
                if published == 0 and not self._handed and not self._notified and not self._stopped:
                    self._wake.clear()  # after the checks, with no await between: a stop() or handoff() is not lost
                    wait = POLL_S if not self._gone else self._gone_since + FORGET_AFTER_S - time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.0))
        finally:
            with contextlib.suppress(Exception):  # what went out need not go out again from the next leader
                await asyncio.wait_for(self._forget_published(), timeout=2.0)
            self.leading = False
            self._handed.clear()  # still in the table: whoever leads next reads them
            self._published.set()
            if forwarded is not None:
                with contextlib.suppress(Exception):
                    await forwarded.unsubscribe()
            with contextlib.suppress(Exception):  # its session lock ends with the session
                await holder.close(timeout=2)
            with contextlib.suppress(Exception):
                await self._pool.release(holder)  # a closed connection: the pool makes a new one when needed

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def _publish_handed(self) -> int:
        rows = [self._handed.popleft() for _ in range(min(self._batch, len(self._handed)))]
        self._published.set()
        return await self._send(rows) or 0

    async def _drain_once(self) -> int | None:
        """Publish the oldest rows of the table: how many were read, None if they could not go out."""
        await self._forget_published()  # they would fill the read
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, subject, headers, body, msg_id FROM outbox ORDER BY seq LIMIT $1", self._batch)
        if self._handed:  # already on their way from memory
            handed = {r.seq for r in self._handed}
            rows = [r for r in rows if r["seq"] not in handed]
        if not rows:
            self.problem = None
            return 0
        self._read.append({r["seq"] for r in rows})
        queued = [Queued(r["seq"], r["subject"], bytes(r["body"]), {"Nats-Msg-Id": r["msg_id"], **r["headers"]})
                  for r in rows]
        return len(rows) if await self._send(queued) is not None else None

    async def _send(self, rows: list[Queued]) -> int | None:
        """Publish rows, to be deleted soon (setting aside those JetStream refuses for good); None if
        the batch could not go out (the rows stay, and the table is read first from now on)."""
        try:
            refused = await self._publisher.publish([(r.subject, r.body, r.headers) for r in rows], timeout=15)
            if refused:
                refused = await self._for_good(refused, rows)
                await self._set_aside([(rows[i], why) for i, why in refused])
        except (PublishFailed, PublishRefused, nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            self.problem = f"cannot publish to NATS: {exc!r}"[:300]
            log.warning("relay.publish_failed", service=self._service, error=repr(exc), pending=len(rows))
            telemetry.RELAY_ERRORS.labels(self._service).inc()
            self._table_first = True
            self._handed.clear()
            await asyncio.sleep(1.0)
            return None
        if not self._gone:
            self._gone_since = time.monotonic()
        self._gone += [r.seq for r in rows]
        self.problem = None
        telemetry.RELAYED.labels(self._service).inc(len(rows))
        return len(rows)

    async def _forget_published(self) -> None:
        """Delete the rows published since the last time: by id, not by range (a row with a lower seq
        may commit after a read). Kept until it succeeds: a failure restarts the relay, and its first
        table read deletes them first."""
        gone, self._gone = self._gone, []
        if not gone:
            return
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", gone)
        except BaseException:
            self._gone = gone + self._gone
            raise

    async def _for_good(self, refused: list[tuple[int, str]], rows: list[Queued]) -> list[tuple[int, str]]:
        """The refusals that no retry will cure. "No stream takes this subject" (503) is only final
        when JetStream answers that no stream has it: it also says so while JetStream is starting,
        and on a cluster while the stream that has it elects a leader (its leader's node lost)."""
        for subject in {rows[i].subject for i, why in refused if why == "status 503"}:
            try:
                answer = await self._nc.request("$JS.API.STREAM.NAMES", json.dumps({"subject": subject}).encode(),
                                                timeout=2.0)
                names = json.loads(answer.data)
            except Exception as exc:
                raise PublishFailed(f"JetStream is not answering: {exc!r}") from exc
            if "error" in names:
                raise PublishFailed(f"JetStream cannot tell which stream takes {subject}: {names['error']}")
            names = names.get("streams")
            if names:
                raise PublishFailed(f"stream {names[0]} has no leader for {subject}")
        return refused

    async def _set_aside(self, refused: list[tuple[Queued, str]]) -> None:
        """Rows JetStream will never take: a dead letter each (for the supervisor, with the reason),
        and the row kept whole in `outbox_dead`; the caller then deletes them from the outbox."""
        letters = []
        for row, why in refused:
            log.error("relay.row_set_aside", service=self._service, seq=row.seq, subject=row.subject, reason=why)
            letters.append((f"{subjects.DEADLETTER}.{self._service}", row.body[:DEAD_LETTER_BODY], {
                "Whistle-Reason": " ".join(f"not publishable: {why}".split())[:1000],
                "Whistle-Subject": " ".join(row.subject.split())[:200] or "-",
                "Whistle-Service": self._service, "Whistle-Stream": "outbox", "Whistle-Stream-Seq": str(row.seq),
                "Whistle-Consumer": "relay", "Whistle-Deliveries": "1",
                "Nats-Msg-Id": f"dl-{self._service}-outbox-{row.seq}",
            }))
        still = await self._publisher.publish(letters, timeout=15)
        if still:
            raise PublishFailed(f"dead letters refused too: {still[0][1]}")
        async with self._pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO outbox_dead (seq, subject, headers, body, reason) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (seq) DO NOTHING",
                [(row.seq, row.subject, row.headers, row.body, why) for row, why in refused])
        telemetry.RELAY_SET_ASIDE.labels(self._service).inc(len(refused))
