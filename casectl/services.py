"""`casectl services`: the service catalogue, whose codes are a report's categories."""

from __future__ import annotations

import json

import click
from rich.table import Table

from casectl.cases import out
from casectl.common import catalogue, settings
from domain.catalogue import Service
from domain.policy import format_span


def _limits(service: Service) -> str:
    if service.limits is None:
        return "-"
    set_ = service.limits.model_dump(exclude_none=True)
    parts: list[str] = []
    for name in set_:
        value = getattr(service.limits, name)
        if name == "loops":
            parts.extend(f"{loop} {format_span(getattr(value, loop))}" for loop in set_[name])
        else:
            parts.append(f"{name} {format_span(value)}")
    return ", ".join(parts)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="the catalogue as JSON")
def services(as_json: bool) -> None:
    """The service catalogue: each service's code (a report's `category`), names, default
    severity and handling, the departments a joint case summons, its own limits."""
    found = catalogue(settings())
    if as_json:
        click.echo(json.dumps(found.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"service catalogue {found.version}")
    for column in ("code", "中文", "English", "severity", "handling", "departments", "limits"):
        table.add_column(column)
    for s in found.services:
        table.add_row(
            s.code,
            s.name_zh,
            s.name_en,
            s.severity.value,
            s.handling_class.value,
            ", ".join(s.departments) or "-",
            _limits(s),
        )
    out.print(table)
