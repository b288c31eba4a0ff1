"""What every service runs on: settings, pool, migrations, broker, consumers, requests, relay, telemetry.

A service's `app.py` builds a `ServiceRuntime`, declares its consumers and its requests as data and
calls `run()`. Handlers stay thin: they get a connection inside an open transaction and return the
messages to write to the outbox; the runtime owns validation, roles, acks, the inbox, dead letters
and retries.

- `service.py`: the process (pool, migrations, NATS, health, start and stop);
- `consumers.py`: JetStream consumers, each a `Consumer` (subjects, handler, batching), batch by batch, in order per whistle;
- `routes.py`: a service's event subjects on one consumer, each with its handler;
- `requests.py`: the gateway's requests, each a `Request` (payload model, roles, handler);
- `together.py`: group commit, for a request whose concurrent calls share one transaction;
- `replies.py`: the runtime's own refusals;
- `relay.py`: the outbox relay that publishes what the transactions queued;
- `faults.py`: which faults are retried and which messages are poison.
"""

from shared.runtime.consumers import Consumer, Effects, Timed, parse_domain_event
from shared.runtime.faults import STALL_S, TRANSIENT, Poison
from shared.runtime.requests import EXPIRED, NoPayload, Request, forbidden
from shared.runtime.routes import EventRoutes
from shared.runtime.service import ServiceRuntime, main
from shared.runtime.together import Together

__all__ = ["EXPIRED", "Consumer", "Timed", "STALL_S", "TRANSIENT", "Effects", "EventRoutes", "NoPayload", "Poison", "Request", "ServiceRuntime",
           "Together", "forbidden", "main", "parse_domain_event"]
