#!/bin/sh
# Prepares a fresh Temporal cluster for Steward: the namespace, and the custom search attributes
# steward/search_attributes.py declares (SEARCH_ATTRIBUTES holds them as `Name=Type` pairs, the
# form of search_attributes.cli_declarations()). Safe to re-run: what exists is left alone, and
# an attribute registered with another type fails the run instead of being changed.
set -eu

: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${SEARCH_ATTRIBUTES:?}"
# Completed runs stay visible (and auditable) in the UI this long.
RETENTION=${NAMESPACE_RETENTION:-720h}

# A just-started frontend, or a just-created namespace, is not served at once everywhere.
retry() {
  attempt=1
  until "$@"; do
    if [ "$attempt" -ge 30 ]; then
      echo "temporal-setup: gave up after $attempt attempts: $*" >&2
      return 1
    fi
    attempt=$((attempt + 1))
    sleep 2
  done
}

ensure_namespace() {
  temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" \
    >/dev/null 2>&1 ||
    temporal operator namespace create --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" \
      --retention "$RETENTION"
}

retry temporal operator cluster health --address "$TEMPORAL_ADDRESS"
retry ensure_namespace

set --
for declaration in $SEARCH_ATTRIBUTES; do
  set -- "$@" --name "${declaration%%=*}" --type "${declaration#*=}"
done
retry temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" "$@"
temporal operator search-attribute list --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE"
