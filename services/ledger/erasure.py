"""An erased reporter's data leaves the event log too: the whistle's `whistle.blown` (the reporter as given,
the free text) is deleted from the EVENTS stream, which otherwise keeps it until its age limit.

The ledger does it because it already holds the broadest rights over the log (it republishes any event
when a dead letter is replayed); NATS lets it delete single messages of EVENTS, nothing more
(shared/nats_auth.py). A message is deleted only once every durable consumer of its subject has
acknowledged it: a service that has not taken the whistle yet would lose it otherwise. Until then, and
while NATS is away, the whistle waits in `erased_in_log` and is tried again every `every_s`.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared import subjects
from shared.contracts import WhistleBlown
from shared.ids import utcnow
from shared.partitions import stored_subject
from shared.runtime.routes import subject_matches

log = structlog.get_logger("ledger.erasure")
BATCH = 100  # whistles looked at per round


async def remember(conn: asyncpg.Connection, erased: dict[UUID, datetime]) -> None:
    """In the transaction projecting whistle.reporter_erased: these whistles' log copies are to go."""
    await conn.executemany("INSERT INTO erased_in_log (whistle_id, erased_at) VALUES ($1, $2)"
                           " ON CONFLICT (whistle_id) DO NOTHING", list(erased.items()))


async def all_consumers(js: JetStreamContext) -> list:
    """Every consumer of EVENTS, page after page."""
    found: list = []
    while page := await js.consumers_info(subjects.EVENTS_STREAM, offset=len(found)):
        found += page
    return found


async def consumers_past(js: JetStreamContext, subject: str, seq: int) -> bool:
    """Whether every durable consumer of EVENTS that takes `subject` has acknowledged `seq`."""
    for info in await all_consumers(js):
        config = info.config
        if not config.durable_name:
            continue  # an ephemeral reader (a test, a bench): nothing depends on it
        filters = config.filter_subjects or ([config.filter_subject] if config.filter_subject else [">"])
        if any(subject_matches(f, subject) for f in filters) and info.ack_floor.stream_seq < seq:
            return False
    return True


async def delete_copies(pool: asyncpg.Pool, js: JetStreamContext, partitions: int) -> int:
    """One round: for each whistle waiting, delete every stored whistle.blown of it (a replay may have
    stored it twice) that all its consumers have taken; how many whistles are done."""
    rows = await pool.fetch("SELECT whistle_id FROM erased_in_log WHERE deleted_at IS NULL ORDER BY erased_at"
                            " LIMIT $1", BATCH)
    done = 0
    for row in rows:
        subject = stored_subject(WhistleBlown.SUBJECT, row["whistle_id"], partitions)
        deleted, waiting = 0, False
        while True:
            try:
                msg = await js.get_msg(subjects.EVENTS_STREAM, subject=subject)  # the last stored
            except NotFoundError:
                break
            if not await consumers_past(js, subject, msg.seq):
                waiting = True
                break
            await js.delete_msg(subjects.EVENTS_STREAM, msg.seq)
            deleted += 1
        if waiting:
            continue
        await pool.execute("UPDATE erased_in_log SET deleted_at = $2, messages = messages + $3 WHERE whistle_id = $1",
                           row["whistle_id"], utcnow(), deleted)
        log.info("erasure.log_copy_deleted", whistle_id=str(row["whistle_id"]), messages=deleted)
        done += 1
    return done
