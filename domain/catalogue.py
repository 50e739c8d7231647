"""The service catalogue: what a report may be about, as versioned data.

Each service has a code (the report's `category`), a Chinese and an English name, the
severity and handling class a dispatcher starts from, the departments a joint case of
this kind summons (吹哨报到), and optionally limits of its own that override the deadline
policy's. The catalogue is a JSON file (`domain/catalogue.json`, or CASE_CATALOGUE); this
module only parses and looks it up (no I/O): `infra.catalogue` reads the file.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from domain.errors import DomainError, validation_message
from domain.model import Frozen, HandlingClass, OrgId, Severity
from domain.policy import Limit, LoopLimits, Span

# the pattern of OpenCase.category: a code is what a report carries as its category
ServiceCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]

# where a caller finds the codes (named in every refusal of an unknown code)
WHERE_THE_CODES_ARE = "`casectl services` or the gateway's GET /services.json"


class ServiceLimits(Frozen):
    """Limits of one service that override the deadline policy's where set: e.g. a burst
    water main must be on site sooner than a broken bench. Carried and validated with the
    catalogue; the deadlines of a case are still those of the policy it opened under
    (docs/architecture.md, "The service catalogue")."""

    intake: Span | None = None
    claim: Span | None = None
    on_site: Limit | None = None
    loops: LoopLimits | None = None
    feedback: Span | None = None
    revisit: Span | None = None
    department: Span | None = None


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not name the same department twice")
    return values


class Service(Frozen):
    code: ServiceCode
    name_zh: Name
    name_en: Name
    severity: Severity  # the default a dispatcher starts from
    handling_class: HandlingClass
    # the departments a joint case of this kind summons (吹哨报到); none for the others
    departments: Annotated[list[OrgId], Field(max_length=20), AfterValidator(_distinct)] = []
    limits: ServiceLimits | None = None


def _distinct_codes(services: list[Service]) -> list[Service]:
    codes = [s.code for s in services]
    twice = sorted({c for c in codes if codes.count(c) > 1})
    if twice:
        raise ValueError(f"a code is listed twice: {', '.join(twice)}")
    return services


class ServiceCatalogue(Frozen):
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
    services: Annotated[
        list[Service], Field(min_length=1, max_length=1000), AfterValidator(_distinct_codes)
    ]

    def get(self, code: str) -> Service | None:
        return next((s for s in self.services if s.code == code), None)

    def service(self, code: str) -> Service:
        """The service of a code, or DomainError naming the field and where the codes are
        (the code itself is not quoted: a caller's input may be anything)."""
        found = self.get(code)
        if found is None:
            raise DomainError(
                f"category: not a service code of catalogue {self.version}; "
                f"the codes: {WHERE_THE_CODES_ARE}"
            )
        return found

    @property
    def codes(self) -> list[str]:
        return [s.code for s in self.services]


def parse_catalogue(data: str | bytes, where: str = "catalogue") -> ServiceCatalogue:
    """A catalogue from its JSON; DomainError naming the field otherwise."""
    try:
        return ServiceCatalogue.model_validate_json(data)
    except ValueError as exc:
        raise DomainError(validation_message(where, exc)) from None
