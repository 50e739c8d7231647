#!/bin/sh
# Applies (or upgrades) Temporal's PostgreSQL schemas: run by the one-shot temporal-schema
# service of deploy/compose.yaml in the temporalio/admin-tools image, before the server
# starts. Safe to rerun: the same setup-schema -v 0.0 + update-schema sequence is what the
# official Helm chart runs before every upgrade; update-schema applies only newer versions.
# The databases themselves are created by temporal/initdb/10-visibility-db.sh.
set -eu
: "${SQL_HOST:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
port="${SQL_PORT:-5432}"
schemas=/etc/temporal/schema/postgresql/v12

i=0
until nc -z "$SQL_HOST" "$port"; do
    i=$((i + 1))
    if [ "$i" -ge 60 ]; then echo "PostgreSQL $SQL_HOST:$port not reachable"; exit 1; fi
    sleep 2
done

for pair in temporal:temporal temporal_visibility:visibility; do
    db="${pair%%:*}"
    dir="${pair##*:}"
    echo "schema of $db"
    temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "$port" -u "$SQL_USER" --db "$db" \
        setup-schema -v 0.0
    temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "$port" -u "$SQL_USER" --db "$db" \
        update-schema -d "$schemas/$dir/versioned"
done
echo "Temporal schemas are up to date"
