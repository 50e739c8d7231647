#!/bin/sh
# Creates the case namespace with a long retention, or sets the retention of an existing
# one: run by the one-shot temporal-namespace service of deploy/compose.yaml (admin-tools
# image) once the server serves. Closed case histories are kept only as long as the
# retention: keep it long and export with `casectl audit export` before it runs out.
# Then waits until the namespace is visible to the operator API, so that the workers can
# register their search attributes at once.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${CASE_NAMESPACE:?}"
retention="${CASE_NAMESPACE_RETENTION:-3650d}"

attempt() {  # attempt <what> <command...>: retry for up to two minutes
    what="$1"; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -ge 60 ]; then echo "gave up: $what"; exit 1; fi
        sleep 2
    done
}

attempt "Temporal serving at $TEMPORAL_ADDRESS" temporal operator cluster health --address "$TEMPORAL_ADDRESS"
if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" -n "$CASE_NAMESPACE" >/dev/null 2>&1; then
    temporal operator namespace update --address "$TEMPORAL_ADDRESS" -n "$CASE_NAMESPACE" --retention "$retention"
    echo "namespace $CASE_NAMESPACE exists; retention set to $retention"
else
    temporal operator namespace create --address "$TEMPORAL_ADDRESS" -n "$CASE_NAMESPACE" --retention "$retention" \
        --description "Grievance cases (caseloop)"
    echo "namespace $CASE_NAMESPACE created with retention $retention"
fi
attempt "namespace $CASE_NAMESPACE visible" \
    temporal operator search-attribute list --address "$TEMPORAL_ADDRESS" -n "$CASE_NAMESPACE"
echo "namespace $CASE_NAMESPACE ready"
