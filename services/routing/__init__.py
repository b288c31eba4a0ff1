"""Routing: the responder registry and the rules that decide who is summoned."""
