"""Value objects and enumerations of the grievance loop.

Everything here is plain pydantic: no I/O, no clock. Payloads travel as JSON with
snake_case fields, lower-case enum strings and ISO-8601 datetimes with offsets.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Ids of grids, communities, streets, districts, actors and departments: short, printable,
# safe in a search attribute, a log line and a SQL literal.
OrgId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
ActorId = OrgId
SourceRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
CASE_ID_PATTERN = r"^case-[a-z0-9_]{1,32}-[A-Za-z0-9._-]{1,64}$"
CaseId = Annotated[str, StringConstraints(pattern=CASE_ID_PATTERN)]


# Bidirectional overrides and isolates can make a text read differently from what it says.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_control_chars(value: str) -> str:
    """Line breaks and tabs are text; other control characters and bidi overrides are not."""
    if any(
        (unicodedata.category(ch) == "Cc" and ch not in "\n\r\t") or ch in _BIDI_CONTROLS
        for ch in value
    ):
        raise ValueError("must not contain control characters")
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control_chars),
]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
    AfterValidator(_no_control_chars),
]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_chars),
]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a timezone offset, e.g. 2026-11-23T09:30:00+08:00")
    if not 2000 <= value.year <= 2100:
        raise ValueError("must lie between the years 2000 and 2100")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class Frozen(BaseModel):
    """Base of every contract model: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=4000)


F = TypeVar("F", bound=Frozen)


def replaced(model: F, changes: Mapping[str, object]) -> F:
    """A copy of `model` with `changes`, validated (strictly) as a new instance is: a
    misspelt field or a value of the wrong type raises ValidationError, where
    `model_copy(update=...)` would take either silently. Callers name their changes through
    a TypedDict or typed parameters, so that mypy sees the names and types as well."""
    return type(model).model_validate({**model.__dict__, **changes}, strict=True)


class Source(StrEnum):
    MINI_PROGRAM = "mini_program"  # 小程序 "心声速递"
    HOTLINE_12345 = "hotline_12345"  # 12345 热线 / 诉速办
    WECHAT_QR = "wechat_qr"  # 网格点微信二维码
    VISIT = "visit"  # 入户走访 (两问大走访)
    PATROL = "patrol"  # 网格员巡查
    OTHER = "other"


class Step(StrEnum):
    """The six steps of the closed loop (六步闭环)."""

    COLLECT = "collect"  # 网格问事
    DELIBERATE = "deliberate"  # 商议说事
    RESOLVE = "resolve"  # 具体解事
    FEEDBACK = "feedback"  # 反馈息事
    REVISIT = "revisit"  # 回访宁事
    ARCHIVE = "archive"  # 归档完事: the case is closed into the ledger


class Level(StrEnum):
    COMMUNITY = "community"
    STREET = "street"
    DISTRICT = "district"

    def above(self) -> Level | None:
        order = list(Level)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


class Loop(StrEnum):
    """The loops of the 7135 rule: a minor matter is closed in the micro-grid within a
    day, a major one in the grid's small loop within three days, a hard one in the
    street's big loop within five; the district is above the street. A loop whose clock
    runs out passes the case to the next loop up."""

    MICRO_GRID = "micro_grid"  # 微网格
    GRID = "grid"  # 网格小循环
    STREET = "street"  # 街道大循环
    DISTRICT = "district"

    def above(self) -> Loop | None:
        order = list(Loop)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None

    @property
    def level(self) -> Level:
        """The organisation that holds a case in this loop."""
        if self in (Loop.MICRO_GRID, Loop.GRID):
            return Level.COMMUNITY
        return Level.STREET if self is Loop.STREET else Level.DISTRICT

    @staticmethod
    def first(severity: Severity, escalate: bool) -> Loop:
        """Where a dispatched matter starts: by its severity, or the street's loop at once
        for a case handled by escalation (上报攻坚)."""
        if escalate or severity is Severity.HARD:
            return Loop.STREET
        return Loop.GRID if severity is Severity.MAJOR else Loop.MICRO_GRID


class Severity(StrEnum):
    MINOR = "minor"  # 小事: closed within a day in the micro-grid
    MAJOR = "major"  # 大事: within three days in the grid's small loop
    HARD = "hard"  # 难事: within five days in the street's big loop


class HandlingClass(StrEnum):
    """稠城's five categories."""

    IMMEDIATE = "immediate"  # 即时办理
    SELF_GOVERNANCE = "self_governance"  # 自治协商
    JOINT = "joint"  # 联合解决
    ESCALATE = "escalate"  # 上报攻坚
    EXPLANATION = "explanation"  # 解释疏导


class Flag(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"

    def worst(self, other: Flag) -> Flag:
        order = list(Flag)
        return self if order.index(self) >= order.index(other) else other


class Role(StrEnum):
    RESIDENT = "resident"
    GRID_WORKER = "grid_worker"
    COMMUNITY_ADMIN = "community_admin"
    STREET_OFFICER = "street_officer"
    DISTRICT_OFFICER = "district_officer"
    DEPARTMENT = "department"
    SYSTEM = "system"
    # registered in a grid (the actor's org is the grid's id): they take the cases the
    # community offers to the grid (组织建单、党员接单)
    PARTY_MEMBER = "party_member"  # 党员
    VOLUNTEER = "volunteer"  # 志愿者


class Satisfaction(StrEnum):
    VERY_SATISFIED = "very_satisfied"
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    UNSATISFIED = "unsatisfied"

    @property
    def content(self) -> bool:
        return self is not Satisfaction.UNSATISFIED


class Outcome(StrEnum):
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"
    MERGED = "merged"


class Coordinates(Frozen):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Location(Frozen):
    grid_id: OrgId
    community_id: OrgId
    street_id: OrgId
    district_id: OrgId
    address: Text | None = None  # personal data when it names a household
    coordinates: Coordinates | None = None

    @property
    def orgs(self) -> list[str]:
        return [self.grid_id, self.community_id, self.street_id, self.district_id]


class ResidentCategory(StrEnum):
    """Residents who are always asked and always visited (三必问四必访): the revisit policy
    names what each category requires. Personal data, like the rest of the reporter."""

    OLD_PARTY_MEMBER = "old_party_member"  # 老党员
    HOUSEHOLD_IN_DIFFICULTY = "household_in_difficulty"  # 困难家庭
    ELDERLY_LIVING_ALONE = "elderly_living_alone"  # 独居老人
    REPEAT_PETITIONER = "repeat_petitioner"  # 重复信访人
    RESIDENTS_REPRESENTATIVE = "residents_representative"  # 居民代表


def _distinct_categories(values: list[ResidentCategory]) -> list[ResidentCategory]:
    if len(set(values)) != len(values):
        raise ValueError("must not name the same category twice")
    return values


class Reporter(Frozen):
    """The resident who reported the case. Personal data: never logged, never in errors."""

    name: ShortText
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 -]{4,19}$")] | None = None
    resident_id: ActorId | None = None  # the resident's account, when reported through an app
    # Left out of the JSON when empty, so reports recorded before categories existed keep
    # their exact content (the audit compares it, the hash chain covers it).
    categories: Annotated[
        list[ResidentCategory],
        Field(max_length=len(ResidentCategory), exclude_if=lambda v: not v),
        AfterValidator(_distinct_categories),
    ] = []


# A reference to a file kept elsewhere (a photo, a video, a signed form): printable ASCII,
# no credentials before the host, schemes https, http, s3 or urn. The file itself never
# travels with a command.
EvidenceUri = Annotated[
    str,
    StringConstraints(
        max_length=500,
        pattern=r"^(?:(?:https?|s3)://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?"
        r"(?:[/?#][!-~]*)?|urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[!-~]+)$",
    ),
]


class Evidence(Frozen):
    """Evidence by reference (a photo on site, the signed resolution): where the file is,
    its SHA-256 and its media type, so that anyone who fetches it can check it is the file
    recorded. No file content ever."""

    uri: EvidenceUri
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    media_type: Annotated[
        str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}/[a-z0-9][a-z0-9.+_-]{0,99}$")
    ]
    caption: ShortText | None = None


def _distinct_files(values: list[Evidence]) -> list[Evidence]:
    if len({v.sha256 for v in values}) != len(values):
        raise ValueError("must not list the same file (sha256) twice")
    return values


# The evidence a command may carry: at most 20 references, none twice. Left out of the
# JSON when empty, so commands and events from before evidence existed keep their content.
EvidenceList = Annotated[
    list[Evidence],
    Field(max_length=20, exclude_if=lambda v: not v),
    AfterValidator(_distinct_files),
]


class RevisitChecklist(Frozen):
    """三必问: the three questions asked at every revisit (矛盾问题、群众不满情绪、群众关心问题).
    Each answer says what the resident raised, or null when nothing was; every key must be
    given, so a checklist shows that all three were asked."""

    contradictions: Text | None  # 矛盾问题: disputes, with neighbours or anyone else
    dissatisfaction: Text | None  # 群众不满情绪: discontent
    concerns: Text | None  # 群众关心问题: what else the resident cares about


class Actor(Frozen):
    """Who sends a command, as asserted by the authenticated calling system."""

    id: ActorId
    role: Role
    org: OrgId
