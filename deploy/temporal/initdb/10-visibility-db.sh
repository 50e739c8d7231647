#!/bin/sh
# Runs once, when the temporal-db container initialises an empty data directory
# (docker-entrypoint-initdb.d): POSTGRES_DB (temporal) exists already; add the
# visibility database. The schemas are applied by temporal/setup-schema.sh.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE DATABASE temporal_visibility OWNER \"$POSTGRES_USER\""
