"""The service catalogue in force: the built-in file (`domain/catalogue.json`) or the one
named by CASE_CATALOGUE."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from domain.catalogue import ServiceCatalogue, parse_catalogue

BUILT_IN = Path(__file__).resolve().parent.parent / "domain" / "catalogue.json"


@cache
def load_catalogue(path: Path = BUILT_IN) -> ServiceCatalogue:
    """The catalogue in `path` (read once per process); DomainError naming the field when
    it is malformed."""
    return parse_catalogue(path.read_bytes(), f"catalogue {path}")
