"""An erased reporter's data leaves the event log too: the whistle's `whistle.blown` (the reporter as given,
the free text) is deleted from the EVENTS stream, which otherwise keeps it until its age limit.

Deleting a message is the JetStream admin API, which no service holds (shared/nats_auth.py): the NATS
admin does it, in the process that declares the streams (`whistle up`'s runner, in a thread;
docker-compose's `log-erasure`). It reads `whistle.reporter_erased` through a durable consumer of its
own, which is also its queue of work: an erasure is acknowledged once the whistle's `whistle.blown`
is gone, and until then comes again. A message is deleted only once every durable consumer of its
subject has acknowledged it: a service that has not taken the whistle yet would lose it otherwise.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import nats
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shared import subjects
from shared.contracts import WhistleBlown, WhistleReporterErased
from shared.partitioned import family_of
from shared.partitions import split_stored, stored_subject
from shared.runtime.routes import subject_matches
from shared.settings import nats_servers

log = structlog.get_logger("log_erasure")
DURABLE = "admin-log-erasure"
AGAIN_S = 2.0  # an erasure whose whistle.blown some consumer has not taken yet comes again this much later


async def all_consumers(js: JetStreamContext) -> list:
    """Every consumer of EVENTS, page after page."""
    found: list = []
    while page := await js.consumers_info(subjects.EVENTS_STREAM, offset=len(found)):
        found += page
    return found


def taken_up_to(info) -> int:
    """The stream sequence up to which a consumer has taken (acknowledged) everything it takes: its ack
    floor, or, with nothing awaiting an ack, the last it was given (a consumer made from a floor in a
    cluster reports an ack floor of 0 until its first ack)."""
    floor = info.ack_floor.stream_seq
    return floor if info.num_ack_pending else max(floor, info.delivered.stream_seq)


async def consumers_past(js: JetStreamContext, subject: str, seq: int,
                         takers: Sequence[tuple[str, tuple[str, ...]]] = ()) -> bool:
    """Whether every durable consumer of EVENTS that takes `subject` has acknowledged `seq`, and every one of
    `takers` (name, filters: what the services declare) that takes it is there to say so: a consumer of its
    family (`family_of`) that takes the subject. A partition's consumer lives in NATS's memory
    (shared/partitioned.py): after a restart of NATS it is back only once its service has made it again,
    from its floor, and until then nothing it has not taken may go."""
    present: set[str] = set()  # the families with a consumer that takes the subject
    for info in await all_consumers(js):
        config = info.config
        if not config.durable_name:
            continue  # an ephemeral reader (a test, a bench): nothing depends on it
        filters = config.filter_subjects or ([config.filter_subject] if config.filter_subject else [">"])
        if any(subject_matches(f, subject) for f in filters):
            if taken_up_to(info) < seq:
                return False
            present.add(family_of(config.durable_name))
    return not any(family_of(name) not in present and any(subject_matches(f, subject) for f in filters)
                   for name, filters in takers)


async def delete_copies(js: JetStreamContext, whistle_id: str, partitions: int,
                        takers: Sequence[tuple[str, tuple[str, ...]]] = ()) -> bool:
    """Delete every stored whistle.blown of the whistle (a replay may have stored it twice) that all its
    consumers have taken; False while one is still waiting for a consumer."""
    subject = stored_subject(WhistleBlown.SUBJECT, whistle_id, partitions)
    while True:
        try:
            msg = await js.get_msg(subjects.EVENTS_STREAM, subject=subject)  # the last stored
        except NotFoundError:
            return True
        if not await consumers_past(js, subject, msg.seq, takers):
            return False
        await js.delete_msg(subjects.EVENTS_STREAM, msg.seq)
        log.info("erasure.log_copy_deleted", whistle_id=whistle_id, seq=msg.seq)


async def erase(nats_url: str, partitions: int, stop: threading.Event | asyncio.Event,
                takers: Sequence[tuple[str, tuple[str, ...]]] = ()) -> None:
    """Until `stop`: take each whistle.reporter_erased and delete its whistle's copies; NATS away, again."""
    while not stop.is_set():
        nc = None
        try:
            nc = await nats.connect(nats_servers(nats_url), name="log-erasure", max_reconnect_attempts=-1)
            js = nc.jetstream()
            await js.add_consumer(subjects.EVENTS_STREAM, ConsumerConfig(
                durable_name=DURABLE, filter_subject=f"{WhistleReporterErased.SUBJECT}.>",
                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=60.0, max_deliver=-1))
            sub = await js.pull_subscribe_bind(durable=DURABLE, stream=subjects.EVENTS_STREAM)
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(50, timeout=1.0)
                except TimeoutError:  # nats-py's is one too
                    continue
                for m in msgs:
                    if await delete_copies(js, split_stored(m.subject)[2], partitions, takers):
                        await m.ack()
                    else:
                        await m.nak(delay=AGAIN_S)
        except Exception as exc:  # noqa: BLE001 — NATS away or a stream not there yet: again shortly
            log.warning("erasure.round_failed", error=repr(exc))
            await asyncio.sleep(AGAIN_S)
        finally:
            if nc is not None:
                try:
                    await nc.close()
                except Exception:  # noqa: BLE001, S110 — closing a connection NATS dropped
                    pass


def in_thread(nats_url: str, partitions: int, takers: Sequence[tuple[str, tuple[str, ...]]] = ()) -> threading.Event:
    """`erase` in a daemon thread of its own (the runner's loop is synchronous); set the event to stop."""
    stop = threading.Event()
    threading.Thread(target=lambda: asyncio.run(erase(nats_url, partitions, stop, takers)), name="log-erasure",
                     daemon=True).start()
    return stop
