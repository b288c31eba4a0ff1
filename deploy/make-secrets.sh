#!/bin/sh
# The passwords docker-compose.yml mounts as secrets: one file each in ./secrets/, random, readable
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
echo "secrets in $(pwd)/secrets (0600)"
