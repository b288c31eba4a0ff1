"""Logging (structlog), metrics (prometheus-client, bounded labels) and the private /metrics + /healthz port."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HANDLED = Counter(
    "whistle_messages_handled_total",
    "Messages handled by outcome (ack, duplicate, nack, dead_letter)",
    ["service", "subject", "outcome"],
)
RELAYED = Counter("whistle_outbox_relayed_total", "Outbox rows published to JetStream", ["service"])
RELAY_ERRORS = Counter("whistle_outbox_relay_errors_total", "Relay publish failures and restarts", ["service"])
RELAY_SET_ASIDE = Counter(
    "whistle_outbox_set_aside_total", "Outbox rows JetStream refused for good, dead-lettered", ["service"])
OUTBOX_LAG = Gauge("whistle_outbox_lag_seconds", "Age of the oldest outbox row (read from the table; a row"
                   " published is deleted at most 0.1 s later)", ["service"])
OUTBOX_ROWS = Gauge("whistle_outbox_rows", "Outbox rows not yet published, or published less than 0.1 s ago"
                    " (counted up to 100,000)", ["service"])
STALLED = Gauge(
    "whistle_stalled_seconds", "How long a dependency of the service has been down (0: up)", ["service", "component"],
)
STALL_COMPONENTS = ("postgres", "nats", "relay", "consumer", "outbox")
COMMANDS = Counter(
    "whistle_commands_total", "Request/reply commands by outcome", ["service", "command", "outcome"]
)
EVENTS_EMITTED = Counter("whistle_events_emitted_total", "Events written to the outbox", ["service", "subject"])
CLOCKS_PENDING = Gauge("whistle_clocks_pending", "SLA clocks waiting for a timer", ["service"])
CONSUMER_PENDING = Gauge(
    "whistle_consumer_pending_messages", "Messages a durable consumer has not yet received", ["service", "consumer"]
)
BATCH_MESSAGES = Histogram(
    "whistle_batch_messages", "Messages handled together in one transaction: a consumer's batch (consumer: its"
    " durable) or a group commit of requests (consumer: the request's subject). Each replica of a service takes"
    " only its share, so more replicas than the load needs show here as thinner batches, each costing a"
    " transaction", ["service", "consumer"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
DB_STATEMENTS = Counter(
    "whistle_db_statements", "Statements a service sent to Postgres, each one a round trip (BEGIN and COMMIT"
    " included): what a transaction costs beyond its rows. Postgres is the one part that does not scale out,"
    " and thinner batches (more replicas than the load needs) show here as more statements for the same work",
    ["service"],
)
CONSUMER_ACK_PENDING = Gauge(
    "whistle_consumer_ack_pending_messages", "Messages delivered but not yet acknowledged", ["service", "consumer"]
)

# domain metrics for supervisors; `department` is the responder unit for sections and
# departments and "member" for party members, so it stays bounded by the registry's units
WHISTLES = Counter("whistle_whistles_total", "Whistles blown", ["source", "category", "tier"])
SUMMONS = Gauge("whistle_summons", "Summons by state", ["state"])
RESPONSE_LATENCY = Histogram(
    "whistle_response_latency_seconds", "From summons issued to reported / on site / resolved",
    ["step", "tier", "kind"], buckets=(30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800),
)
SLA_WARNINGS = Counter("whistle_sla_warnings_total", "SLA warnings", ["tier", "department"])
SLA_BREACHES = Counter("whistle_sla_breaches_total", "SLA breaches", ["tier", "department"])
ESCALATIONS = Counter("whistle_escalations_total", "Escalation ladder steps raised", ["level", "department"])
HTTP_REQUESTS = Counter("whistle_http_requests_total", "Gateway requests", ["route", "status"])
HTTP_LATENCY = Histogram("whistle_http_request_seconds", "Gateway request latency", ["route"])


def configure_logging(service: str, json: bool = True) -> None:
    """JSON lines to stderr (console renderer when `json` is false), bound to the service name."""
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def serve_telemetry(port: int, health: Callable[[], dict]) -> asyncio.AbstractServer | None:
    """Serve GET /metrics and GET /healthz (200 when `health()["ready"]`, else 503, with its problems)."""
    if not port:
        return None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
            if path.startswith(b"/metrics"):
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest()
            elif path.startswith(b"/healthz"):
                state = health()
                status = "200 OK" if state["ready"] else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps(state, ensure_ascii=False).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except Exception:  # a broken scrape must never take the service down
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "0.0.0.0", port)
