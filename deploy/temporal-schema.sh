#!/bin/sh
# Creates Temporal's two PostgreSQL databases on the first start and applies the schema upgrades
# a newer Temporal image ships on later ones. Every step is a no-op once done, so this one-shot
# runs on each `docker compose up`.
set -eu

: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" -u "$POSTGRES_USER" "$@"
}

setup_database() {  # database name, schema directory
  sql_tool --db "$1" create
  sql_tool --db "$1" setup-schema -v 0.0
  sql_tool --db "$1" update-schema -d "$SCHEMA_DIR/$2/versioned"
}

setup_database temporal temporal
setup_database temporal_visibility visibility
