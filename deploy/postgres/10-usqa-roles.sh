#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d, in
# Docker Compose and in the Kubernetes StatefulSet): creates usqa's least-privilege roles with
# deploy/postgres/roles.sql (usqa_owner for migrations, usqa_app for usqa itself,
# usqa_dashboard and its login usqa_reader for dashboards). The superuser (POSTGRES_USER) is
# left to the database itself and to backups. docs/operations.md, "Database roles".
set -eu
ROLES_SQL=${ROLES_SQL:-/usr/local/share/usqa/roles.sql}
for name in POSTGRES_OWNER_PASSWORD POSTGRES_APP_PASSWORD; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then
        echo "usqa: $name is not set: set it in usqa.env (compose) or the usqa-secrets Secret (Kubernetes), then initialise the database again" >&2
        exit 1
    fi
done
set -- -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner_password="$POSTGRES_OWNER_PASSWORD" -v app_password="$POSTGRES_APP_PASSWORD"
if [ -n "${POSTGRES_READER_PASSWORD:-}" ]; then
    set -- "$@" -v reader_password="$POSTGRES_READER_PASSWORD"
else
    echo "usqa: POSTGRES_READER_PASSWORD is not set: no dashboard login (usqa_reader) created" >&2
fi
psql "$@" -f "$ROLES_SQL"
