"""The live SLA board through faults underneath: an open board stream (the console's server-sent
events, read over plain HTTP) keeps showing new whistles after NATS is killed and restarted, and
after Postgres is restarted; the stream itself is never dropped. Announcements the gateway missed
while it was away from NATS are made good by a whole board sent to every stream once it is back."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import System, wait_for

pytestmark = pytest.mark.e2e

QUIET = {"category": "ebike_charging", "description": "charging in the stairwell / 楼道充电",
         "location": {"building": "5"}, "tier": "routine", "source": "hotline_12345"}  # 1 h to report: no firings
ROW_WITHIN_S = 20.0  # from a whistle accepted to its row on the open stream, with NATS or Postgres just back


class BoardStream:
    """`GET /console/board/stream` as a signed-in supervisor, read in a thread: each SSE event with the
    time it came, and why the stream ended if it ended before `close`."""

    def __init__(self, system: System) -> None:
        self.client = httpx.Client(base_url=system.base_url, timeout=httpx.Timeout(60.0, connect=10.0))
        form = self.client.get("/console/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        console = system.creds["console"]["supervisor"]
        r = self.client.post("/console/signin", data={"csrf": csrf, "username": console["username"],
                                                      "password": console["password"], "next": "/console/board"})
        assert r.status_code == 303, r.text
        self.events: list[tuple[float, str]] = []
        self.ended: str | None = None
        self.opened = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> BoardStream:
        self._thread.start()
        assert self.opened.wait(15), f"the stream did not open: {self.ended}"
        return self

    def __exit__(self, *exc) -> None:
        self._closing = True
        self.client.close()  # ends the read in the thread
        self._thread.join(10)

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/console/board/stream") as r:
                assert r.status_code == 200, r.status_code
                lines: list[str] = []
                for line in r.iter_lines():
                    if line:
                        lines.append(line)
                        continue
                    event = "\n".join(lines)
                    lines = []
                    if event.startswith("retry:"):
                        self.opened.set()
                    self.events.append((time.monotonic(), event))
            self.ended = "the server ended the stream"
        except Exception as exc:  # noqa: BLE001 — any end before close is what the test looks for
            if not self._closing:
                self.ended = f"{type(exc).__name__}: {exc}"
        finally:
            self.opened.set()

    def row_of(self, whistle_id: str, since: float = 0.0) -> float | None:
        """When a board event holding the whistle's row came (after `since`), else None."""
        mark = f'data-whistle="{whistle_id}"'
        return next((t for t, e in list(self.events) if t >= since and e.startswith("event: board") and mark in e), None)

    def whole_boards(self, since: float) -> int:
        return sum(1 for t, e in list(self.events) if t >= since and 'data-full="yes"' in e)


@pytest.fixture
def stream(system: System) -> Iterator[BoardStream]:
    with BoardStream(system) as s:
        yield s


def blow_until_accepted(system: System, within_s: float = 60.0) -> tuple[str, float]:
    """A quiet whistle, retried with its Idempotency-Key while the system comes back; (id, accepted at)."""
    key = str(uuid.uuid4())
    deadline = time.monotonic() + within_s
    while True:
        try:
            with system.client() as c:
                r = c.post("/v1/whistles", json=QUIET, headers={"Idempotency-Key": key})
            if r.status_code in (200, 201):
                return r.json()["id"], time.monotonic()
            assert r.status_code in (503, 504), r.text
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "no whistle accepted"
        time.sleep(0.2)


def assert_row_arrives(stream: BoardStream, whistle_id: str, accepted_at: float) -> float:
    """The row reaches the open stream within ROW_WITHIN_S of being accepted; how long it took."""
    at = wait_for(lambda: stream.row_of(whistle_id, accepted_at - 1) or stream.ended, timeout=ROW_WITHIN_S + 5,
                  interval=0.05, what=f"the row of {whistle_id} on the open stream")
    assert stream.ended is None, f"the stream was dropped: {stream.ended}"
    took = at - accepted_at
    assert took <= ROW_WITHIN_S, f"the row took {took:.1f} s"
    return took


def test_an_open_board_stream_shows_new_whistles_after_nats_is_killed_and_restarted(system: System, stream) -> None:
    before, accepted = blow_until_accepted(system)
    assert assert_row_arrives(stream, before, accepted) < 5.0  # the stream works before the fault

    killed_at = time.monotonic()
    killed = system.kill_nats()
    wait_for(lambda: system.pids().get("nats") not in (None, killed), timeout=60, what="nats restarted")
    # the gateway's connection comes back: every stream gets its whole board (what was announced
    # while the gateway was away is lost), on the same connection
    wait_for(lambda: stream.whole_boards(killed_at) or stream.ended, timeout=30, interval=0.1,
             what="a whole board on the open stream once NATS is back")
    assert stream.ended is None, f"the stream was dropped: {stream.ended}"

    after, accepted = blow_until_accepted(system)
    assert_row_arrives(stream, after, accepted)
    second, accepted = blow_until_accepted(system)  # and it goes on, not just once
    assert_row_arrives(stream, second, accepted)


def test_an_open_board_stream_shows_new_whistles_after_postgres_is_restarted(system: System, stream) -> None:
    before = system.postgres_pid()
    restarted = system.pg_ctl("restart", "-m", "fast", "-w")
    assert restarted.returncode == 0, restarted.stdout
    system.wait_postgres_adopted(other_than=before)

    whistle_id, accepted = blow_until_accepted(system)
    assert_row_arrives(stream, whistle_id, accepted)
    second, accepted = blow_until_accepted(system)
    assert_row_arrives(stream, second, accepted)
