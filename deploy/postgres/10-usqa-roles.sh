#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# Creates a read-only role for dashboards (Grafana, Metabase, Power BI): it can SELECT the
# ledger tables and the qa_* views that usqa's migrations create later, and nothing else.
set -eu
if [ -z "${POSTGRES_READER_PASSWORD:-}" ]; then
    echo "POSTGRES_READER_PASSWORD is not set: no read-only dashboard role created" >&2
    exit 0
fi
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader_password="$POSTGRES_READER_PASSWORD" <<'SQL'
CREATE ROLE usqa_reader LOGIN PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE :"DBNAME" TO usqa_reader;
GRANT USAGE ON SCHEMA public TO usqa_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO usqa_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO usqa_reader;
SQL
