#!/usr/bin/env bash
# Extract every console string from the code and templates into the catalogue, keeping existing translations.
set -euo pipefail
pybabel="${PYBABEL:-$(cd "$(dirname "$0")/../../../.." && pwd)/.venv/bin/pybabel}"
cd "$(dirname "$0")/.."
"$pybabel" extract -F babel.cfg -k N_ --no-location --sort-output --omit-header -o locale/messages.pot .
for lang in zh_CN en; do
  po="locale/$lang/LC_MESSAGES/messages.po"
  if [ -f "$po" ]; then
    "$pybabel" update --no-fuzzy-matching --omit-header -i locale/messages.pot -d locale -l "$lang"
  else
    "$pybabel" init -i locale/messages.pot -d locale -l "$lang"
  fi
done
rm -f locale/messages.pot
