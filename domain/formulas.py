"""The ranking formulas as versioned data: the rates a month's units are scored on, what
each rate counts, and the thresholds of the red flag (红旗, commended) and the yellow flag
(黄旗, warned).

Three formulas, selectable per report (`casectl report monthly --formula NAME`):

- `flags-2026.1` (domain/ranking.py): the first ranking, kept for the months already
  published under it. It compares cases opened in the month with cases archived in the
  month (two groups) and counts merged and withdrawn reports as received.
- `contest-2026.1` (红黄旗竞赛): the Choucheng report (稠城街道, 义乌) ranks its communities
  every month "依据各社区每月受理群众事件数、完成群众事件数、群众满意度三项指标" — cases
  received, cases completed, residents' satisfaction.
- `beijing-12345-2026.1`: Beijing 12345's three rates of 接诉即办, 响应率 (response), 解决率
  (resolution) and 满意率 (satisfaction).

The two new formulas count one cohort (`CohortCounts`): the cases opened in the month,
as they stand at the month's end. Merged and withdrawn reports leave the cohort and are
counted beside it. Breaches, returns and urgings are the month's events, each counted
against the unit that held the case at that moment (`holder`).

Pure: no I/O, no clock. The counts come from `cases`, `ledger` and `case_events`
(activities/reports.py).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction

from pydantic import Field, ValidationError, computed_field, model_validator

from domain.errors import validation_message
from domain.model import Frozen, Level, Loop, Satisfaction
from domain.ranking import FLAGS_2026_1, Banner, FlagFormula, Number, RankLevel

# "Satisfied", one definition for every count: the resident is content (very satisfied,
# satisfied or basically satisfied 基本满意); only "unsatisfied" is not. The SQL mirror is
# report_satisfied() (migration 007); a test keeps the two equal.
SATISFIED: tuple[str, ...] = tuple(s.value for s in Satisfaction if s.content)


def satisfied(value: str | None) -> bool:
    return value in SATISFIED


# ---------------------------------------------------------------------------- attribution


class Holder(StrEnum):
    """The kind of unit that holds a case at a level (or in a 7135 loop)."""

    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"
    DISTRICT = "district"

    @property
    def depth(self) -> int:
        return list(Holder).index(self)


_LOOP_HOLDERS = {
    Loop.MICRO_GRID: Holder.GRID,  # 微网格: the grid's micro-grid worker
    Loop.GRID: Holder.GRID,  # 网格小循环
    Loop.STREET: Holder.STREET,  # 街道大循环
    Loop.DISTRICT: Holder.DISTRICT,
}
_LEVEL_HOLDERS = {
    Level.COMMUNITY: Holder.COMMUNITY,
    Level.STREET: Holder.STREET,
    Level.DISTRICT: Holder.DISTRICT,
}


def holder(level: str | None, loop: str | None = None) -> Holder | None:
    """Who held the case, from the level (and loop, when the event carries one) on a
    `deadline_breached`, `case_escalated` (its from_level, from_loop), `return_requested`
    or `case_urged` event. None: no level (urged before dispatch), counted against no
    ranked unit."""
    if loop is not None:
        return _LOOP_HOLDERS[Loop(loop)]
    if level is None:
        return None
    return _LEVEL_HOLDERS[Level(level)]


def counts_against(held_by: Holder | None, level: RankLevel) -> bool:
    """Whether an event held by `held_by` counts for a unit of `level`: the unit that held
    the case, and the units above it (a street answers for its communities), never a unit
    below it (the community does not answer for what its street let run out)."""
    return held_by is not None and held_by.depth <= Holder(level.value).depth


# ---------------------------------------------------------------------------- the counts


class CohortCounts(Frozen):
    """One unit's month for the cohort formulas.

    The cohort: the cases opened in the month, as they stand at the month's end (so a
    published month does not change later). Breaches, returns and urgings: the events of
    the month, counted against the unit that held the case (`counts_against`)."""

    opened: int = Field(default=0, ge=0)  # opened in the month, every report
    merged: int = Field(default=0, ge=0)  # … of those, merged into another case by month end
    withdrawn: int = Field(default=0, ge=0)  # … withdrawn by month end
    received: int = Field(default=0, ge=0)  # opened − merged − withdrawn (受理)
    contacted: int = Field(default=0, ge=0)  # received, claimed or checked in by month end
    responded: int = Field(default=0, ge=0)  # … first contact within the response time
    completed: int = Field(default=0, ge=0)  # received, archived as completed by month end
    rated: int = Field(default=0, ge=0)  # completed with a satisfaction
    satisfied: int = Field(default=0, ge=0)  # … content (SATISFIED)
    breaches: int = Field(default=0, ge=0)  # clocks run out in the month while it held them
    returns: int = Field(default=0, ge=0)  # 退单 asked for in the month while it held the case
    returns_approved: int = Field(default=0, ge=0)  # … approved (the case left it)
    urgings: int = Field(default=0, ge=0)  # 督办 in the month while it held the case


def _placed(level: RankLevel, ids: dict[str, str | None], parent: bool) -> str:
    kinds = ["grid_id", "community_id", "street_id", "district_id"]
    index = kinds.index(f"{level.value}_id") + (1 if parent else 0)
    value = ids[kinds[index]]
    if value is None:
        raise ValueError(f"a {level.value} unit needs its {kinds[index]}")
    return value


class CohortMeasures(CohortCounts):
    """The cohort counts of one grid, community or street, with where it sits."""

    level: RankLevel
    district_id: str
    street_id: str
    community_id: str | None = None
    grid_id: str | None = None

    def _ids(self) -> dict[str, str | None]:
        return {
            "grid_id": self.grid_id,
            "community_id": self.community_id,
            "street_id": self.street_id,
            "district_id": self.district_id,
        }

    @property
    def org_id(self) -> str:
        return _placed(self.level, self._ids(), parent=False)

    @property
    def parent_id(self) -> str:
        return _placed(self.level, self._ids(), parent=True)

    @property
    def orgs(self) -> list[str]:
        return [o for o in (self.grid_id, self.community_id, self.street_id, self.district_id) if o]


# ---------------------------------------------------------------------------- formulas

COUNT_NAMES = tuple(CohortCounts.model_fields)


class Rate(Frozen):
    """One rate of a formula: a count over a count, its weight in the 100-point score,
    and its thresholds."""

    key: str  # response, resolution, completion, satisfaction
    label: str  # as printed: "响应率 response"
    numerator: str  # a CohortCounts field
    denominator: str  # a CohortCounts field
    weight: int = Field(ge=0, le=100)
    min_denominator: int = Field(ge=1)  # the rate means something from this many cases
    red_at_least: Number  # 红旗 needs at least this
    yellow_below: Number  # 黄旗 below this (with min_denominator cases)

    def value(self, c: CohortCounts) -> Fraction | None:
        den = getattr(c, self.denominator)
        return Fraction(getattr(c, self.numerator), den) if den else None

    def counted(self, c: CohortCounts) -> bool:
        return int(getattr(c, self.denominator)) >= self.min_denominator


class RateFormula(Frozen):
    """A named, versioned cohort formula (a built-in one below, or one read from JSON by
    `formula_from_json`)."""

    name: str  # contest, beijing-12345
    version: str  # contest-2026.1: the name and the version of its numbers
    title: str  # what it is, in the reports' words
    source: str  # where its indicators come from
    response_hours: int = Field(ge=1)  # responded: first contact within this after opening
    rates: list[Rate]
    # 黄旗 when the breaches the unit held (it or a unit under it) exceed this share of its
    # received cases (with the first rate's minimum of received cases)
    yellow_breach_share: Number
    red_share: Number  # 红旗: at most this share of the ranked peers (at least one)

    @model_validator(mode="after")
    def _consistent(self) -> RateFormula:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name):
            raise ValueError("name: lower-case letters, digits and dashes")
        if not self.version.startswith(f"{self.name}-"):
            raise ValueError(f"version: must start with the name, e.g. {self.name}-2026.1")
        if not self.rates:
            raise ValueError("rates: at least one")
        keys = [r.key for r in self.rates]
        if len(set(keys)) != len(keys):
            raise ValueError("rates: each key once")
        for r in self.rates:
            for side in (r.numerator, r.denominator):
                if side not in COUNT_NAMES:
                    raise ValueError(
                        f"rates.{r.key}: {side!r} is not a count; counts: {', '.join(COUNT_NAMES)}"
                    )
        if sum(r.weight for r in self.rates) != 100:
            raise ValueError("rates: the weights add up to 100")
        return self

    def rules(self) -> list[str]:
        """The formula in words, as printed on every report."""
        rates = "; ".join(
            f"{r.label} = {r.numerator} / {r.denominator}" for r in self.rates
        )
        score = " + ".join(f"{r.weight}·{r.key}" for r in self.rates if r.weight)
        yellow = "; ".join(
            f"{r.key} < {_pct(r.yellow_below)} (≥ {r.min_denominator} {r.denominator})"
            for r in self.rates
        )
        red = ", ".join(f"{r.key} ≥ {_pct(r.red_at_least)}" for r in self.rates)
        return [
            f"{self.title} — {self.source}",
            "cohort: the cases opened in the month, as they stand at the month's end; "
            "merged and withdrawn reports leave it (counted beside it: opened = received "
            "+ merged + withdrawn)",
            f"responded = first contact (claim or check-in) within {self.response_hours} h "
            "of opening; satisfied = very satisfied, satisfied or basically satisfied "
            "(基本满意) over rated",
            rates,
            "breaches, returns (退单) and urgings (督办): the month's events, each counted "
            "against the unit that held the case then (its level, or 7135 loop) and the "
            "units above it, never a unit below it",
            "peers: the units of one level under the same parent; ranked only when every "
            "rate has its minimum of cases",
            f"score = {score} (0-100, rounded half up to 0.1); equal scores share a rank",
            f"黄旗 (warned) when any: breaches held by the unit or under it > "
            f"{_pct(self.yellow_breach_share)} of received (≥ {self.rates[0].min_denominator} "
            f"received); {yellow}",
            f"红旗 (commended): of the ranked units not warned with {red}, the best "
            f"max(1, floor({self.red_share} × ranked peers)) by score (ties share)",
        ]


def _pct(value: Decimal) -> str:
    return f"{(value * 100).normalize():f}%"


CONTEST_2026_1 = RateFormula(
    name="contest",
    version="contest-2026.1",
    title="红黄旗竞赛: cases received, cases completed, residents' satisfaction",
    source=(
        "the Choucheng report (稠城街道, 义乌): 依据各社区每月受理群众事件数、完成群众事件数、"
        "群众满意度三项指标，常态化推进红黄旗竞赛，每月评比排名"
    ),
    # not a rate of this formula; kept equal to the 12345 formula's so the two agree
    response_hours=24,
    rates=[
        # completed over received, one cohort; the report gives the two counts
        Rate(
            key="completion",
            label="完成率 completion",
            numerator="completed",
            denominator="received",
            weight=50,
            min_denominator=5,
            # the Choucheng report: 3,095 of 3,102 resolved (99.8 %)
            red_at_least=Decimal("0.95"),
            # a month's cases mostly still open at its end: a backlog
            yellow_below=Decimal("0.50"),
        ),
        Rate(
            key="satisfaction",
            label="满意率 satisfaction",
            numerator="satisfied",
            denominator="rated",
            weight=50,
            min_denominator=5,
            red_at_least=Decimal("0.95"),
            # the Fuchunjiang Road report gives "居民满意度高达90%以上" as an achievement
            yellow_below=Decimal("0.90"),
        ),
    ],
    # one clock run out for every ten cases received
    yellow_breach_share=Decimal("0.10"),
    red_share=Decimal("0.2"),
)

BEIJING_12345_2026_1 = RateFormula(
    name="beijing-12345",
    version="beijing-12345-2026.1",
    title="接诉即办 three rates: 响应率 response, 解决率 resolution, 满意率 satisfaction",
    source=(
        "Beijing 12345's assessment of 接诉即办 (response, resolution and satisfaction "
        "rates); the weights 10 / 45 / 45 are our assumption, not checked against a source"
    ),
    # a working day: the usual 12345 time to contact the reporter of an ordinary case
    response_hours=24,
    rates=[
        Rate(
            key="response",
            label="响应率 response",
            numerator="responded",
            denominator="received",
            weight=10,
            min_denominator=5,
            red_at_least=Decimal("0.95"),
            yellow_below=Decimal("0.80"),
        ),
        # resolved: archived as completed, which the closed loop allows only once the
        # resident accepted the resolution (feedback) or was revisited
        Rate(
            key="resolution",
            label="解决率 resolution",
            numerator="completed",
            denominator="received",
            weight=45,
            min_denominator=5,
            red_at_least=Decimal("0.90"),
            yellow_below=Decimal("0.50"),
        ),
        Rate(
            key="satisfaction",
            label="满意率 satisfaction",
            numerator="satisfied",
            denominator="rated",
            weight=45,
            min_denominator=5,
            red_at_least=Decimal("0.95"),
            yellow_below=Decimal("0.90"),
        ),
    ],
    # one clock run out for every ten cases received
    yellow_breach_share=Decimal("0.10"),
    red_share=Decimal("0.2"),
)

# Every formula a report may name: by version, and by name for its latest version.
FORMULAS: dict[str, FlagFormula | RateFormula] = {
    f.version: f for f in (FLAGS_2026_1, CONTEST_2026_1, BEIJING_12345_2026_1)
}
LATEST: dict[str, str] = {
    "flags": FLAGS_2026_1.version,
    CONTEST_2026_1.name: CONTEST_2026_1.version,
    BEIJING_12345_2026_1.name: BEIJING_12345_2026_1.version,
}
RATE_FORMULAS: tuple[RateFormula, ...] = (CONTEST_2026_1, BEIJING_12345_2026_1)


def formula_named(text: str) -> FlagFormula | RateFormula:
    """A formula by its version (contest-2026.1) or name (contest: the latest version);
    ValueError listing the known ones."""
    found = FORMULAS.get(LATEST.get(text, text))
    if found is None:
        known = ", ".join([*FORMULAS, *LATEST])
        raise ValueError(f"unknown formula {text!r}; known: {known}")
    return found


def formula_from_json(text: str) -> RateFormula:
    """A cohort formula kept as data (a JSON document of RateFormula's fields); ValueError
    naming the field. A built-in version with other numbers is refused: a change of any
    number is a new version."""
    try:
        formula = RateFormula.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(validation_message("formula", exc)) from None
    known = FORMULAS.get(formula.version)
    if known is not None and known != formula:
        raise ValueError(
            f"formula: version {formula.version} is built in with other numbers; "
            "a change of any number is a new version"
        )
    return formula


def formula_name(f: FlagFormula | RateFormula) -> str:
    return f.name if isinstance(f, RateFormula) else "flags"


# ---------------------------------------------------------------------------- assessment


class RatedUnit(Frozen):
    """One unit's month under a cohort formula: its counts, rates, score, rank and flag."""

    unit: CohortMeasures
    rates: dict[str, Number | None]  # rate key → value (0-1, 4 decimals); None: no cases
    peers: int
    score: Number | None  # None: too few cases to rank
    rank: int | None
    banner: Banner | None
    reasons: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def org_id(self) -> str:
        return self.unit.org_id

    @computed_field  # type: ignore[prop-decorator]
    @property
    def parent_id(self) -> str:
        return self.unit.parent_id


def rate_score(c: CohortCounts, formula: RateFormula) -> Decimal | None:
    if not all(r.counted(c) for r in formula.rates):
        return None
    exact = sum(
        (r.weight * (r.value(c) or Fraction(0)) for r in formula.rates), start=Fraction(0)
    )
    total = sum(r.weight for r in formula.rates)
    exact = exact * 100 / total
    return (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(
        Decimal("0.1"), rounding=ROUND_HALF_UP
    )


def rate_warnings(c: CohortCounts, formula: RateFormula) -> list[str]:
    why = []
    enough = c.received >= formula.rates[0].min_denominator
    if enough and Fraction(c.breaches, c.received) > Fraction(formula.yellow_breach_share):
        why.append(
            f"{c.breaches} breaches held / {c.received} received > "
            f"{_pct(formula.yellow_breach_share)}"
        )
    for r in formula.rates:
        value = r.value(c)
        if r.counted(c) and value is not None and value < Fraction(r.yellow_below):
            why.append(f"{r.key} {_show(value)} < {_pct(r.yellow_below)}")
    return why


def _show(value: Fraction) -> str:
    return f"{float(value) * 100:.1f}%"


def _rounded(value: Fraction | None) -> Decimal | None:
    if value is None:
        return None
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )


def assess_rates(units: Sequence[CohortMeasures], formula: RateFormula) -> list[RatedUnit]:
    """Score, rank and flag the units of one level for one month under `formula`; ordered
    by parent, rank (unranked last), then id."""
    if len({u.level for u in units}) > 1:
        raise ValueError("units of one level only")
    ids = [(u.parent_id, u.org_id) for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError("each unit once")
    by_parent: dict[str, list[CohortMeasures]] = defaultdict(list)
    for u in units:
        by_parent[u.parent_id].append(u)
    result: list[RatedUnit] = []
    for parent in sorted(by_parent):
        scored = [(u, rate_score(u, formula)) for u in by_parent[parent]]
        ranked = sorted(
            ((u, s) for u, s in scored if s is not None), key=lambda p: (-p[1], p[0].org_id)
        )
        unranked = sorted((u for u, s in scored if s is None), key=lambda u: u.org_id)
        ranks = _ranks(ranked)
        qualifying = [
            (u, s)
            for u, s in ranked
            if not rate_warnings(u, formula)
            and all(
                (v := r.value(u)) is not None and v >= Fraction(r.red_at_least)
                for r in formula.rates
            )
        ]
        best = _ranks(qualifying)
        slots = max(1, int(Fraction(formula.red_share) * len(ranked))) if ranked else 0
        for u, points in [*ranked, *((u, None) for u in unranked)]:
            why = rate_warnings(u, formula)
            banner: Banner | None = Banner.YELLOW if why else None
            place = best.get(u.org_id)
            if place is not None and place <= slots:
                banner = Banner.RED
                why = [
                    f"rank {ranks[u.org_id]} of {len(ranked)}; place {place} among "
                    f"{len(qualifying)} qualifying, red for places ≤ {slots}"
                ]
            if points is None:
                short = ", ".join(
                    f"{getattr(u, r.denominator)} {r.denominator} (needs {r.min_denominator})"
                    for r in formula.rates
                    if not r.counted(u)
                )
                why = [*why, f"not ranked: {short}"]
            result.append(
                RatedUnit(
                    unit=u,
                    rates={r.key: _rounded(r.value(u)) for r in formula.rates},
                    peers=len(ranked),
                    score=points,
                    rank=ranks.get(u.org_id),
                    banner=banner,
                    reasons=why,
                )
            )
    return result


def _ranks(ranked: Sequence[tuple[CohortMeasures, Decimal]]) -> dict[str, int]:
    """1, 2, 2, 4: equal scores share a rank (`ranked` is best first)."""
    ranks: dict[str, int] = {}
    for position, (u, points) in enumerate(ranked, start=1):
        before = ranked[position - 2] if position > 1 else None
        ranks[u.org_id] = ranks[before[0].org_id] if before and before[1] == points else position
    return ranks


class UnitMonth(Frozen):
    """A unit's rates in one month (the HTML page's table of months)."""

    month: str
    org_id: str
    rates: dict[str, Number | None]
    score: Number | None
    banner: Banner | None


class RatesReport(Frozen):
    """What `casectl report monthly --formula contest|beijing-12345` prints and writes."""

    month: str
    level: RankLevel
    scope: str | None
    timezone: str
    period_start: datetime
    period_end: datetime  # the cohort stands as it was here
    formula_name: str
    formula: RateFormula
    rules: list[str]
    units: list[RatedUnit]
    history: list[UnitMonth]  # the listed units' rates in the months before, oldest first
    generated_at: datetime


def within_rated(units: Sequence[RatedUnit], org: str | None) -> list[RatedUnit]:
    return [r for r in units if org is None or org in r.unit.orgs]
