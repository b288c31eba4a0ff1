#!/bin/sh
# The passwords and keys docker-compose.yml mounts as secrets: one file each in ./secrets/, random, readable
# by the owner only (umask before the first byte is written). An existing file is kept (rotate one by
# deleting it, running this again, then `docker compose run --rm db-roles` and restarting its user).
set -eu
umask 077
cd "$(dirname "$0")/.."
mkdir -p secrets
for name in postgres_password db_intake_password db_routing_password db_response_password \
            db_escalation_password db_ledger_password db_notifier_password grafana_admin_password; do
  [ -s "secrets/$name" ] || openssl rand -hex 32 > "secrets/$name"
done
# signed commands (shared/signing.py): an Ed25519 key per signer (the gateway, and the services that ask
# another one as the system), kept as PEM and handed over as "name:base64" of its 32 raw bytes; every
# service gets the public keys. A key is kept once made (rotate one by deleting its .pem).
b64() { base64 | tr '+/' '-_' | tr -d '=\n'; }
signers="gateway notifier routing"
verify=""
for signer in $signers; do
  pem="secrets/command_key_$signer.pem"
  [ -s "$pem" ] || openssl genpkey -algorithm ed25519 -out "$pem"
  printf '%s:%s\n' "$signer" "$(openssl pkey -in "$pem" -outform DER | tail -c 32 | b64)" > "secrets/command_key_$signer"
  verify="$verify${verify:+,}$signer:$(openssl pkey -in "$pem" -pubout -outform DER | tail -c 32 | b64)"
done
printf '%s\n' "$verify" > secrets/command_verify_keys
echo "secrets in $(pwd)/secrets (0600)"
