#!/bin/sh
# Writes deploy/.env for deploy/compose.yaml with fresh random secrets (mode 600), once.
# It never overwrites an existing file: losing CASE_ENCRYPTION_KEYS makes every encrypted
# history and sealed ledger field unreadable. Back the file up (or move the values to your
# secret store) before anything else.
set -eu
cd "$(dirname "$0")"
if [ -e .env ]; then
    echo "deploy/.env exists; not touching it (rotate keys as README 'Security' says)" >&2
    exit 1
fi
rand() {  # rand <bytes> <hex|base64>
    if command -v openssl >/dev/null 2>&1; then
        openssl rand "-$2" "$1"
    else
        python3 -c "import os, sys, base64, binascii; b = os.urandom(int(sys.argv[1])); \
print(binascii.hexlify(b).decode() if sys.argv[2] == 'hex' else base64.b64encode(b).decode())" "$1" "$2"
    fi
}
umask 077
{
    echo "# Secrets of deploy/compose.yaml, made by make-env.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
    echo "TEMPORAL_DB_PASSWORD=$(rand 24 hex)"
    echo "CASE_DB_PASSWORD=$(rand 24 hex)"
    echo "CASE_ENCRYPTION_KEYS=k$(date -u +%Y%m%d)=$(rand 32 base64)"
    echo "CASE_CODEC_TOKEN=$(rand 32 hex)"
    echo "CASE_GATEWAY_KEYS=hotline_12345=$(rand 24 hex),mini_program=$(rand 24 hex)"
} > .env
echo "wrote deploy/.env (mode 600)"
