"""Lists what `docker build -f deploy/Dockerfile .` would send as build context, applying the
repository's .dockerignore with docker-py's implementation of its rules (the `docker`
package, e.g. Debian's python3-docker that docker-compose v1 brings). Fails if .data/,
.venv/, .git/, tests or caches would be sent, or a path the Dockerfile copies is missing."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from docker.utils.build import exclude_paths

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    files = sorted(exclude_paths(str(REPO), patterns, dockerfile="deploy/Dockerfile"))
    print(f"{len(files)} files:", dict(Counter(f.split("/")[0] for f in files)))
    bad = [
        f
        for f in files
        if f.startswith((".data/", ".venv/", ".git/", "tests/", "benchmarks/"))
        or "__pycache__" in f
        or f.endswith(".pyc")
    ]
    copied = re.findall(
        r"^COPY (?:--\S+ )*(\S+) ", (REPO / "deploy" / "Dockerfile").read_text(), re.M
    )
    missing = [
        src
        for src in copied
        if not any(f == src or f.startswith(src.rstrip("/") + "/") for f in files)
    ]
    for f in bad:
        print("must not be in the context:", f)
    for src in missing:
        print("COPY source not in the context:", src)
    print(f"COPY sources: {copied}")
    return 1 if bad or missing else 0


if __name__ == "__main__":
    sys.exit(main())
