"""Response: the lifecycle of each summons (报到 → on site → resolved) and of verification."""
