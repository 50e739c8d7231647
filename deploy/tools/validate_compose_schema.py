"""Validates deploy/compose.yaml against a Compose Specification JSON schema (draft 7).

    python tools/validate_compose_schema.py compose-spec.json [compose.yaml]

Needs PyYAML and jsonschema. YAML anchors and merge keys are resolved first, as Compose
does. Exit 1 on any schema error."""

from __future__ import annotations

import json
import sys

import jsonschema
import yaml


def main() -> int:
    schema_path = sys.argv[1]
    compose_path = sys.argv[2] if len(sys.argv) > 2 else "compose.yaml"
    with open(compose_path) as f:
        doc = yaml.safe_load(f)
    with open(schema_path) as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    for error in errors:
        print(list(error.path), error.message[:300])
    print(
        f"{len(doc['services'])} services, {len(errors)} schema errors "
        f"(schema: {schema.get('title', '?')}, {schema_path})"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
