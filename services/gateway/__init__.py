"""Gateway: the one HTTP edge. Authenticates, validates, and asks the owning service over NATS."""
