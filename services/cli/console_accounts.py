"""The demo's console passwords: `whistle up` sets them through routing (which owns the accounts)."""

from __future__ import annotations

import json

import nats

from shared import subjects
from shared.settings import nats_servers
from shared.signing import Signer

# printed by `whistle up` and written to credentials.json; a supervisor resets any of them
DEMO_PASSWORDS = {"dispatcher": "whistle-dispatcher", "supervisor": "whistle-supervisor",
                  "responder": "whistle-responder"}


async def set_demo_passwords(nats_url: str, creds: dict, signer: Signer, timeout: float = 30.0) -> dict:
    """One password per role for every account of the demo; what to sign in with, by role."""
    groups = {
        "dispatcher": [{"username": creds["dispatcher"]["id"], "role": "dispatcher"}],
        "supervisor": [{"username": creds["supervisor"]["id"], "role": "supervisor"}],
        "responder": [{"username": r["id"], "role": "responder"} for r in creds["responders"]],
    }
    nc = await nats.connect(nats_servers(nats_url), name="runner")
    try:
        for role, accounts in groups.items():
            body = signer.body(subjects.CMD_ROUTING_PASSWORD_SET, {"role": "system", "id": signer.name},
                               {"accounts": accounts, "password": DEMO_PASSWORDS[role]})
            msg = await nc.request(subjects.CMD_ROUTING_PASSWORD_SET, body, timeout=timeout)
            reply = json.loads(msg.data)
            if not reply.get("ok"):
                raise RuntimeError(f"setting the demo {role} passwords was refused: {reply.get('refusal')}")
    finally:
        await nc.drain()
    return {
        "url": f"{creds['base_url']}/console/",
        "dispatcher": {"username": creds["dispatcher"]["id"], "password": DEMO_PASSWORDS["dispatcher"]},
        "supervisor": {"username": creds["supervisor"]["id"], "password": DEMO_PASSWORDS["supervisor"]},
        "responders": {"username": "<responder id, e.g. d-housing>", "password": DEMO_PASSWORDS["responder"]},
    }
