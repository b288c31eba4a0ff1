"""Notifier: contact rules, notifications and their delivery on webhooks, WeCom, DingTalk, email and SMS."""
