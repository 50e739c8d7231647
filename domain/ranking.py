"""The monthly red/yellow flag ranking (红黄旗竞赛) of grids, communities and streets.

Seed 000 (稠城街道, 义乌): "依据各社区每月受理群众事件数、完成群众事件数、群众满意度三项
指标，常态化推进红黄旗竞赛，每月评比排名，并将工作开展情况纳入社区年度考核" — every month the
communities are ranked on cases received, cases completed and residents' satisfaction, and
the result feeds the annual assessment. In such a competition (竞赛) the red flag (红旗) is
the honour given to the best units and the yellow flag (黄旗) the warning given to units
that fall behind. Mind the colours: a *case's* red flag (`domain.model.Flag`) is the
opposite, a case overdue at district level; here such a case costs its units the red flag
and earns them the yellow one.

The formula is data, versioned like the deadline policy: every report carries the version
and its thresholds, so an auditor can recompute each flag from the counts printed next to
it. Changing a number means a new version. The reports give the indicators, not the
thresholds; where a number comes from is said next to it.

Pure: no I/O, no clock. The counts come from the ledger (activities/reports.py).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field, PlainSerializer, computed_field

from domain.model import Frozen

MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

# Exact in the rules, a plain number in JSON.
Number = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class RankLevel(StrEnum):
    """The units ranked each month, and the unit whose office ranks them (their parent)."""

    GRID = "grid"  # 网格, ranked within its community
    COMMUNITY = "community"  # 社区, ranked within its street (Choucheng report)
    STREET = "street"  # 街道, ranked within its district

    @property
    def parent(self) -> str:
        return {"grid": "community", "community": "street", "street": "district"}[self.value]


class Banner(StrEnum):
    """What a unit is given for the month."""

    RED = "red"  # 红旗: commended, the best of its peers
    YELLOW = "yellow"  # 黄旗: warned, it fell behind

    @property
    def label(self) -> str:
        return "红旗 commended" if self is Banner.RED else "黄旗 warned"


class Counts(Frozen):
    """What happened in one month to the cases of a unit (or of a whole scope).

    `received` counts cases opened in the month; the others count cases archived in the
    month (the ledger), except `red_cases`: cases that were overdue at district level
    (their red deadline breached) at some moment of the month, archived or not."""

    received: int = Field(default=0, ge=0)  # opened in the month (受理)
    archived: int = Field(default=0, ge=0)  # archived in the month, any outcome
    completed: int = Field(default=0, ge=0)  # archived with outcome completed (完成)
    completed_on_time: int = Field(default=0, ge=0)  # of those, no resolve deadline missed
    escalated: int = Field(default=0, ge=0)  # archived having gone up a level at least once
    reopened: int = Field(default=0, ge=0)  # archived having been reopened at least once
    returned: int = Field(default=0, ge=0)  # archived having been returned at least once
    rated: int = Field(default=0, ge=0)  # archived with a satisfaction rating
    satisfied: int = Field(default=0, ge=0)  # of those, content (domain.formulas.SATISFIED)
    resolved: int = Field(default=0, ge=0)  # completed cases with a resolution time
    resolve_seconds: int = Field(default=0, ge=0)  # their total time from opening to resolution
    red_cases: int = Field(default=0, ge=0)  # overdue at district level during the month

    @property
    def on_time(self) -> Fraction | None:
        return Fraction(self.completed_on_time, self.completed) if self.completed else None

    @property
    def satisfaction(self) -> Fraction | None:
        return Fraction(self.satisfied, self.rated) if self.rated else None

    @property
    def completion(self) -> Fraction:
        """Completed over received, at most 1; 1 when nothing was received (Choucheng report
        compares the two counts: 3,102 collected, 3,095 resolved)."""
        if self.received == 0:
            return Fraction(1)
        return min(Fraction(1), Fraction(self.completed, self.received))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def on_time_rate(self) -> float | None:
        return _rate(self.on_time)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def satisfaction_rate(self) -> float | None:
        return _rate(self.satisfaction)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def completion_rate(self) -> float:
        return float(round(self.completion, 4))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def avg_resolve_hours(self) -> float | None:
        """Mean time from opening to the (last) resolution of the completed cases."""
        return round(self.resolve_seconds / self.resolved / 3600, 1) if self.resolved else None


def _rate(value: Fraction | None) -> float | None:
    return None if value is None else float(round(value, 4))


class UnitMeasures(Counts):
    """The counts of one grid, community or street for one month, with where it sits."""

    level: RankLevel
    district_id: str
    street_id: str
    community_id: str | None = None
    grid_id: str | None = None

    @property
    def org_id(self) -> str:
        org = {
            RankLevel.GRID: self.grid_id,
            RankLevel.COMMUNITY: self.community_id,
            RankLevel.STREET: self.street_id,
        }[self.level]
        if org is None:
            raise ValueError(f"a {self.level.value} unit needs its {self.level.value}_id")
        return org

    @property
    def parent_id(self) -> str:
        parent = {
            RankLevel.GRID: self.community_id,
            RankLevel.COMMUNITY: self.street_id,
            RankLevel.STREET: self.district_id,
        }[self.level]
        if parent is None:
            raise ValueError(f"a {self.level.value} unit needs its {self.level.parent}_id")
        return parent

    @property
    def orgs(self) -> list[str]:
        """The unit and every unit above it."""
        return [o for o in (self.grid_id, self.community_id, self.street_id, self.district_id) if o]


class TrendPoint(Counts):
    """The counts of a scope (one unit and everything under it, or everything) in a month."""

    month: str


class Weights(Frozen):
    """Points of the 100-point score (百分制) per rate; they add up to 100."""

    satisfaction: int = 40
    on_time: int = 40
    completion: int = 20


class FlagFormula(Frozen):
    """A version of the flag rules and every number in them."""

    version: str
    # a unit is scored and ranked only with enough cases for its rates to mean something
    min_completed: int = Field(ge=1)
    min_rated: int = Field(ge=1)
    weights: Weights
    # 红旗: the best units of each parent meeting both rates and not warned, at most this
    # share of the ranked peers (at least one unit)
    red_on_time: Number
    red_satisfaction: Number
    red_share: Number
    # 黄旗: any one of these
    yellow_on_time: Number
    yellow_satisfaction: Number
    yellow_completion: Number
    yellow_red_cases: int = Field(ge=1)

    def rules(self) -> list[str]:
        """The formula in words, as printed on every report."""
        w = self.weights
        return [
            "peers: the units of one level under the same parent "
            "(grids of a community, communities of a street, streets of a district)",
            "on-time = completed on time / completed; satisfaction = very satisfied, "
            "satisfied or basically satisfied / rated; completion = min(1, completed / "
            "received), 1 when nothing was received",
            f"ranked only with ≥ {self.min_completed} completed and ≥ {self.min_rated} rated "
            f"cases in the month",
            f"score = {w.satisfaction}·satisfaction + {w.on_time}·on-time + "
            f"{w.completion}·completion (0-100, rounded half up to 0.1); rank among the ranked "
            f"peers, equal scores share a rank",
            f"黄旗 (warned) when any: ≥ {self.yellow_red_cases} case overdue at district level "
            f"(a red case) in the month; on-time < {_pct(self.yellow_on_time)} "
            f"(≥ {self.min_completed} completed); satisfaction < "
            f"{_pct(self.yellow_satisfaction)} (≥ {self.min_rated} rated); completion < "
            f"{_pct(self.yellow_completion)} (≥ {self.min_completed} received)",
            f"红旗 (commended): of the ranked units not warned with on-time ≥ "
            f"{_pct(self.red_on_time)} and satisfaction ≥ {_pct(self.red_satisfaction)}, the "
            f"best max(1, floor({self.red_share} × ranked peers)) by score (ties share)",
        ]


def _pct(value: Decimal) -> str:
    return f"{(value * 100).normalize():f}%"


FLAGS_2026_1 = FlagFormula(
    version="flags-2026.1",
    # five cases: below that one late case moves the rate by more than 20 points
    min_completed=5,
    min_rated=5,
    # the Choucheng report's indicators: received and completed (as completion) and
    # satisfaction; the 7135 ladder (Fuchunjiang Road report) makes "completed" mean
    # "completed within its time", hence on-time beside them
    weights=Weights(satisfaction=40, on_time=40, completion=20),
    # 稠城街道 (Choucheng report) reports 3,095 of 3,102 resolved (99.8 %) and 100 % satisfaction;
    # 95 % leaves room for one late or lukewarm case in twenty
    red_on_time=Decimal("0.95"),
    red_satisfaction=Decimal("0.95"),
    # a street of 10 communities commends 2 of them
    red_share=Decimal("0.2"),
    # the Fuchunjiang Road report (富春江路社区) gives "居民满意度高达90%以上" as its
    # achievement: below
    # 90 % a unit is behind; on-time below 80 % means one case in five missed its 7135 time
    # (a choice, the reports give no figure); completing fewer than half of the month's cases
    # builds a backlog
    yellow_on_time=Decimal("0.80"),
    yellow_satisfaction=Decimal("0.90"),
    yellow_completion=Decimal("0.50"),
    # DESIGN §3: a case overdue at district level turns red and stays on the district's
    # list: one is enough
    yellow_red_cases=1,
)
CURRENT_FORMULA = FLAGS_2026_1


class Ranked(Frozen):
    """One unit's month: its counts, score, rank among its peers and flag, with why."""

    unit: UnitMeasures
    peers: int  # units ranked under the same parent (the unit included when ranked)
    score: Number | None  # None: too few cases to rank
    rank: int | None
    banner: Banner | None
    reasons: list[str]


def score(c: Counts, formula: FlagFormula) -> Decimal | None:
    """The 100-point score, or None when the unit has too few cases to be ranked."""
    if c.completed < formula.min_completed or c.rated < formula.min_rated:
        return None
    assert c.on_time is not None and c.satisfaction is not None
    w = formula.weights
    exact = w.satisfaction * c.satisfaction + w.on_time * c.on_time + w.completion * c.completion
    return (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(
        Decimal("0.1"), rounding=ROUND_HALF_UP
    )


def warnings(c: Counts, formula: FlagFormula) -> list[str]:
    """Why a unit gets the yellow flag (empty: it does not)."""
    f = formula
    why = []
    if c.red_cases >= f.yellow_red_cases:
        why.append(f"{c.red_cases} case(s) overdue at district level")
    if c.completed >= f.min_completed and c.on_time is not None:
        if c.on_time < Fraction(f.yellow_on_time):
            why.append(f"on-time {_show(c.on_time)} < {_pct(f.yellow_on_time)}")
    if c.rated >= f.min_rated and c.satisfaction is not None:
        if c.satisfaction < Fraction(f.yellow_satisfaction):
            why.append(f"satisfaction {_show(c.satisfaction)} < {_pct(f.yellow_satisfaction)}")
    if c.received >= f.min_completed and c.completion < Fraction(f.yellow_completion):
        why.append(f"completion {_show(c.completion)} < {_pct(f.yellow_completion)}")
    return why


def _show(value: Fraction) -> str:
    return f"{float(value) * 100:.1f}%"


def _competition_ranks(ranked: Sequence[tuple[UnitMeasures, Decimal]]) -> dict[str, int]:
    """1, 2, 2, 4: equal scores share a rank (`ranked` is best first)."""
    ranks: dict[str, int] = {}
    for position, (u, points) in enumerate(ranked, start=1):
        before = ranked[position - 2] if position > 1 else None
        ranks[u.org_id] = ranks[before[0].org_id] if before and before[1] == points else position
    return ranks


def _qualifies(u: Counts, formula: FlagFormula) -> bool:
    """Ranked, not warned, and both rates at the red thresholds."""
    return (
        score(u, formula) is not None
        and not warnings(u, formula)
        and u.on_time is not None
        and u.satisfaction is not None
        and u.on_time >= Fraction(formula.red_on_time)
        and u.satisfaction >= Fraction(formula.red_satisfaction)
    )


def red_slots(ranked_peers: int, formula: FlagFormula) -> int:
    """How many best ranks of a parent's ranked units may carry the red flag."""
    if ranked_peers == 0:
        return 0
    return max(1, int(Fraction(formula.red_share) * ranked_peers))


def assess(units: Sequence[UnitMeasures], formula: FlagFormula = CURRENT_FORMULA) -> list[Ranked]:
    """Score, rank and flag the units of one level for one month. Peers are the units with
    the same parent; the result is ordered by parent, rank (unranked last), then id."""
    levels = {u.level for u in units}
    if len(levels) > 1:
        raise ValueError("units of one level only: " + ", ".join(sorted(levels)))
    ids = [(u.parent_id, u.org_id) for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError("each unit once")
    by_parent: dict[str, list[UnitMeasures]] = defaultdict(list)
    for u in units:
        by_parent[u.parent_id].append(u)
    result: list[Ranked] = []
    for parent in sorted(by_parent):
        ranked: list[tuple[UnitMeasures, Decimal]] = []
        unranked: list[UnitMeasures] = []
        for u in by_parent[parent]:
            s = score(u, formula)
            if s is None:
                unranked.append(u)
            else:
                ranked.append((u, s))
        ranked.sort(key=lambda p: (-p[1], p[0].org_id))
        unranked.sort(key=lambda u: u.org_id)
        ranks = _competition_ranks(ranked)
        # 红旗: the best of those qualifying, within the slots (a warned unit's place goes
        # to the next one)
        qualifying = [(u, p) for u, p in ranked if _qualifies(u, formula)]
        best = _competition_ranks(qualifying)
        slots = red_slots(len(ranked), formula)
        everyone: list[tuple[UnitMeasures, Decimal | None]] = [*ranked]
        everyone += [(u, None) for u in unranked]
        for u, points in everyone:
            rank = ranks.get(u.org_id)
            why = warnings(u, formula)
            banner: Banner | None = Banner.YELLOW if why else None
            place = best.get(u.org_id)
            if place is not None and place <= slots:
                assert u.on_time is not None and u.satisfaction is not None
                banner = Banner.RED
                why = [
                    f"rank {rank} of {len(ranked)}; place {place} among {len(qualifying)} "
                    f"qualifying, red for places ≤ {slots}; on-time {_show(u.on_time)}, "
                    f"satisfaction {_show(u.satisfaction)}"
                ]
            if points is None:
                why = [
                    *why,
                    f"not ranked: {u.completed} completed, {u.rated} rated "
                    f"(needs {formula.min_completed} and {formula.min_rated})",
                ]
            result.append(
                Ranked(
                    unit=u, peers=len(ranked), score=points, rank=rank, banner=banner, reasons=why
                )
            )
    return result


# ---------------------------------------------------------------------------- months


def parse_month(text: str) -> str:
    """A month as YYYY-MM; ValueError when it is not one."""
    m = MONTH_PATTERN.match(text)
    if m is None or not 2000 <= int(m.group(1)) <= 2100:
        raise ValueError("expected a month as YYYY-MM between 2000-01 and 2100-12, e.g. 2026-10")
    return text


def shift_month(month: str, by: int) -> str:
    year, mon = (int(p) for p in parse_month(month).split("-"))
    index = year * 12 + (mon - 1) + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_bounds(month: str, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of the month at local midnight in `timezone` (the policy's office time)."""
    zone = ZoneInfo(timezone)
    year, mon = (int(p) for p in parse_month(month).split("-"))
    nxt_year, nxt_mon = (int(p) for p in shift_month(month, 1).split("-"))
    start = datetime(year, mon, 1, tzinfo=zone)
    end = datetime(nxt_year, nxt_mon, 1, tzinfo=zone)
    return start, end


def months_back(month: str, count: int) -> list[str]:
    """The `count` months ending with `month`, oldest first."""
    return [shift_month(month, -k) for k in range(count - 1, -1, -1)]


# ---------------------------------------------------------------------------- the report


class MonthlyReport(Frozen):
    """What `casectl report monthly` prints and writes: one level's units for one month
    (within a scope when given), their flags under a stamped formula, and the trend."""

    month: str
    level: RankLevel
    scope: str | None  # an org id: only units at or under it are listed
    scope_level: str | None  # grid, community, street or district: what the scope is
    timezone: str  # months are cut at local midnight here (the policy's timezone)
    counted_from: str  # "summary" (report_months) or "ledger" (recounted from its rows)
    period_start: datetime
    period_end: datetime
    formula: FlagFormula
    formula_name: str = "flags"  # its name (domain/formulas.py), the version in `formula`
    rules: list[str]
    units: list[Ranked]
    trend: list[TrendPoint]  # the scope's months, oldest first, this month last
    generated_at: datetime


def locate(units: Sequence[UnitMeasures], org: str) -> str | None:
    """Which kind of unit `org` is (grid, community, street, district) as these units
    know it, or None when none of them is it or lies under it."""
    for u in units:
        for kind in ("grid", "community", "street", "district"):
            if getattr(u, f"{kind}_id") == org:
                return kind
    return None


def within(units: Sequence[Ranked], org: str | None) -> list[Ranked]:
    """The units that are `org` or lie under it (all when org is None)."""
    return [r for r in units if org is None or org in r.unit.orgs]
