"""Contracts and common plumbing shared by every Whistle service."""
