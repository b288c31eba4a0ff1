"""Demo data: a few whistles the seed community really raised, when the ledger is empty."""

from __future__ import annotations

import httpx

DEMO_WHISTLES = [
    {"category": "roof_leak", "description": "Top-floor roof leaks when it rains (12345 hotline) / 顶楼漏雨",
     "location": {"building": "7"}, "tier": "urgent", "source": "hotline_12345"},
    {"category": "fence_broken", "description": "Fence cut open by the west gate, people cut through / 西门围栏被剪开",
     "location": {"building": "3", "address": "west gate"}, "tier": "routine", "source": "grid_patrol"},
    {"category": "clothes_drying", "description": "Nowhere to dry quilts in the yard / 院里没处晾被子",
     "location": {"building": "12"}, "tier": "routine", "source": "service_point"},
]


def seed(creds: dict) -> int:
    """Blow the demo whistles once; returns how many were raised."""
    headers = {"Authorization": f"Bearer {creds['dispatcher']['token']}"}
    with httpx.Client(base_url=creds["base_url"], headers=headers, timeout=10) as client:
        existing = client.get("/v1/whistles", params={"limit": 1})
        existing.raise_for_status()
        closed = client.get("/v1/whistles", params={"limit": 1, "status": "closed"})
        if existing.json() or closed.json():
            return 0
        for body in DEMO_WHISTLES:
            client.post("/v1/whistles", json=body).raise_for_status()
    return len(DEMO_WHISTLES)
