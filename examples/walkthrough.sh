#!/usr/bin/env bash
# The README walkthrough: run it (or paste it) in a second terminal while `make run` serves.
# tests/service/test_walkthrough.py runs this very file against a live server.
set -euo pipefail
B=${PARTAGE_URL:-http://127.0.0.1:8000}
CREDENTIALS=${PARTAGE_DEMO_CREDENTIALS:-var/demo-credentials.json}
PARTAGE=${PARTAGE:-.venv/bin/partage}
# field KEY...: read JSON on stdin and print the value at that path
field() { python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[int(key)] if isinstance(value, list) else value[key]
print(value if isinstance(value, str) else json.dumps(value))' "$@"; }

# 1. The tourism office's credentials (printed by `make run`) → an access token (15 minutes).
ID=$(field "Office de tourisme" client_id < "$CREDENTIALS")
SECRET=$(field "Office de tourisme" client_secret < "$CREDENTIALS")
TOKEN=$(curl -sf "$B/oauth/token" -d grant_type=client_credentials \
        -d client_id="$ID" -d client_secret="$SECRET" | field access_token)
AUTH="Authorization: Bearer $TOKEN"

# 2. Its agreements: only its own.
curl -sf "$B/agreements" -H "$AUTH" > agreements.json
AGREEMENT=$(field 0 id < agreements.json)
echo "agreement $AGREEMENT: $(field 0 purpose < agreements.json)"

# 3. A dry run that is denied: payments by day are finer than the agreement allows (month).
curl -s "$B/agreements/$AGREEMENT/decisions" -H "$AUTH" -H 'Content-Type: application/json' \
     -d '{"group_by": {"departement": "departement", "paid_at": "day"}, "measures": ["subjects"]}' \
     > denied.json
echo "denied: $(field reasons 0 code < denied.json) on $(field reasons 0 field < denied.json)"

# 4. The extract it may have: summer spending by département, month and country of card.
cat > request.json <<'JSON'
{"group_by": {"departement": "departement", "paid_at": "month", "card_country": "value"},
 "measures": ["amount.sum", "amount.mean", "subjects"],
 "filters": {"paid_at": {"from": "2025-06-01", "to": "2025-08-31"}},
 "format": "csv"}
JSON
curl -sf "$B/agreements/$AGREEMENT/decisions" -H "$AUTH" -H 'Content-Type: application/json' \
     -d @request.json | field estimated_cells | xargs echo "permitted, estimated cells:"
EXTRACT=$(curl -sf "$B/agreements/$AGREEMENT/extracts" -H "$AUTH" \
          -H 'Content-Type: application/json' -H 'Idempotency-Key: summer-2025' \
          -d @request.json | field id)

# 5. Poll the job until the release is ready.
for _ in $(seq 1 120); do
    STATUS=$(curl -sf "$B/extracts/$EXTRACT" -H "$AUTH" | field status)
    [ "$STATUS" = succeeded ] && break
    [ "$STATUS" = failed ] && { echo "extract failed"; exit 1; }
    sleep 1
done
echo "extract $EXTRACT: $STATUS"

# 6. Download the CSV and its signed manifest, then verify both offline with the public keys.
curl -sf "$B/extracts/$EXTRACT/download?format=csv" -H "$AUTH" -o release.csv
curl -sf "$B/extracts/$EXTRACT/manifest" -H "$AUTH" -o manifest.json
curl -sf "$B/.well-known/jwks.json" -o jwks.json
"$PARTAGE" verify manifest.json release.csv --jwks jwks.json

# 7. How many cells were released, how many suppressed, and why.
echo "cells: $(field cells < manifest.json), released: $(field released < manifest.json)," \
     "suppressed by reason: $(field suppressed_by_reason < manifest.json)"
head -5 release.csv

# 8. Anyone holding the two files (a data protection officer) re-runs the audit without the data.
"$PARTAGE" audit release.csv --manifest manifest.json --quiet
