"""JSON Schemas of the public contract, generated from the pydantic models
(docs/architecture.md, "The public contract").

    python -m devstack.schemas --write   # regenerate schemas/ after a model change
    python -m devstack.schemas --check   # exit 1 when schemas/ is out of date (also a test)

Clients in other languages read these; a change here is a change of the contract.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from domain.commands import COMMANDS, OpenCase
from domain.events import Event
from domain.state import CaseRecord, CaseState, CaseSummary

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _command_schema(name: str) -> dict[str, Any]:
    schema = COMMANDS[name].model_json_schema()
    schema["properties"].pop("kind", None)  # the update name says it
    schema["title"] = f"update {name}"
    return schema


def generate() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every input and output of CaseWorkflow."""
    schemas: dict[str, dict[str, Any]] = {
        "OpenCase.json": OpenCase.model_json_schema(),
        "CaseState.json": CaseState.model_json_schema(mode="serialization"),
        "CaseSummary.json": CaseSummary.model_json_schema(mode="serialization"),
        "CaseRecord.json": CaseRecord.model_json_schema(mode="serialization"),
        "Event.json": TypeAdapter(Event).json_schema(mode="serialization"),
    }
    for name in COMMANDS:
        schemas[f"commands/{name}.json"] = _command_schema(name)
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def drift() -> list[str]:
    """Files of schemas/ that differ from the models (missing, changed or left over)."""
    expected = {name: render(schema) for name, schema in generate().items()}
    present = {str(p.relative_to(SCHEMAS)) for p in SCHEMAS.rglob("*.json")}
    changed = [
        name
        for name, text in expected.items()
        if not (SCHEMAS / name).is_file() or (SCHEMAS / name).read_text(encoding="utf-8") != text
    ]
    return sorted(changed + [name for name in present if name not in expected])


def write() -> None:
    for path in SCHEMAS.rglob("*.json"):
        path.unlink()
    for name, schema in generate().items():
        target = SCHEMAS / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(schema), encoding="utf-8")


def main(argv: list[str]) -> None:
    if argv == ["--write"]:
        write()
        print(f"wrote {len(generate())} schemas to {SCHEMAS}")
    elif argv == ["--check"]:
        stale = drift()
        if stale:
            sys.exit("schemas/ is out of date (run `make schemas`): " + ", ".join(stale))
        print("schemas/ matches the models")
    else:
        sys.exit("usage: python -m devstack.schemas --write | --check")


if __name__ == "__main__":
    main(sys.argv[1:])
