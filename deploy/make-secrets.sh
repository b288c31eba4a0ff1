#!/bin/sh
# The passwords and keys docker-compose.yml mounts as secrets: one file each in ./secrets/, random, readable
# by the owner only (umask before the first byte is written). An existing file is kept (rotate one by
# deleting it, running this again, then `docker compose run --rm db-roles` and restarting its user).
set -eu
umask 077
cd "$(dirname "$0")/.."
mkdir -p secrets
for name in postgres_password db_intake_password db_routing_password db_response_password \
            db_escalation_password db_ledger_password db_notifier_password grafana_admin_password \
            nats_admin_password nats_route_password nats_gateway_password nats_intake_password \
            nats_routing_password nats_response_password nats_escalation_password nats_ledger_password \
            nats_notifier_password; do
  [ -s "secrets/$name" ] || openssl rand -hex 32 > "secrets/$name"
done
# signed commands (shared/signing.py): a secret of 32 random bytes per signer (the gateway, and the services
# that ask another one as the system), "name:base64"; each service gets only the keys derived for it,
# HMAC-SHA256(secret, "whistle-command:<service>"), as "signer@service:base64". A secret is kept once made
# (rotate one by deleting secrets/command_key_<signer> and running this again).
b64() { base64 | tr '+/' '-_' | tr -d '=\n'; }
hex() { od -An -v -tx1 | tr -d ' \n'; }
signers="gateway notifier routing"
owners="intake routing response escalation ledger notifier"
for signer in $signers; do
  [ -s "secrets/command_key_$signer" ] || printf '%s:%s\n' "$signer" "$(openssl rand 32 | b64)" > "secrets/command_key_$signer"
done
for owner in $owners; do
  keys=""
  for signer in $signers; do
    secret=$(cut -d: -f2 "secrets/command_key_$signer" | tr -d '\n' | tr -- '-_' '+/')
    while [ $(( ${#secret} % 4 )) -ne 0 ]; do secret="$secret="; done
    key=$(printf 'whistle-command:%s' "$owner" \
          | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(printf '%s' "$secret" | base64 -d | hex)" -binary | b64)
    keys="$keys${keys:+,}$signer@$owner:$key"
  done
  printf '%s\n' "$keys" > "secrets/command_verify_keys_$owner"
done
echo "secrets in $(pwd)/secrets (0600)"
