"""The monthly red/yellow flag formula (domain/ranking.py): each threshold at its edge,
ranks and ties, the share of red flags, and the months in office time."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.ranking import (
    FLAGS_2026_1,
    Banner,
    Counts,
    RankLevel,
    UnitMeasures,
    assess,
    locate,
    month_bounds,
    months_back,
    parse_month,
    red_slots,
    score,
    shift_month,
    warnings,
    within,
)

F = FLAGS_2026_1


def unit(org: str, parent: str = "S-1", **counts: Any) -> UnitMeasures:
    """A community of street `parent`: 20 received, 20 completed on time, 20 rated and
    satisfied unless told otherwise."""
    base: dict[str, Any] = {
        "received": 20,
        "archived": 20,
        "completed": 20,
        "completed_on_time": 20,
        "rated": 20,
        "satisfied": 20,
    }
    base.update(counts)
    return UnitMeasures(
        level=RankLevel.COMMUNITY,
        district_id="D-1",
        street_id=parent,
        community_id=org,
        **base,
    )


def by_org(units: list[UnitMeasures]) -> dict[str, Any]:
    return {r.unit.org_id: r for r in assess(units)}


def test_the_formula_is_versioned_and_its_numbers_travel_with_it() -> None:
    assert F.version == "flags-2026.1"
    data = F.model_dump(mode="json")
    assert data["red_on_time"] == 0.95 and data["yellow_satisfaction"] == 0.9
    assert data["weights"] == {"satisfaction": 40, "on_time": 40, "completion": 20}
    assert sum(data["weights"].values()) == 100
    rules = " ".join(F.rules())
    assert "≥ 95%" in rules and "< 80%" in rules and "< 90%" in rules and "< 50%" in rules


def test_score_is_the_weighted_rates_rounded_half_up() -> None:
    perfect = Counts(received=10, completed=10, completed_on_time=10, rated=10, satisfied=10)
    assert score(perfect, F) == Decimal("100.0")
    # 40·(7/8) + 40·(5/6) + 20·1 = 35 + 33.333… + 20 = 88.333… -> 88.3
    c = Counts(received=8, completed=8, completed_on_time=5 * 8 // 6, rated=8, satisfied=7)
    assert c.completed_on_time == 6
    assert score(c, F) == Decimal("35") + Decimal("30") + Decimal("20")
    # a half rounds up: 40·(1/16) … exactly x.x5
    half = Counts(received=16, completed=16, completed_on_time=16, rated=16, satisfied=15)
    assert 40 * 15 / 16 + 40 + 20 == 97.5
    assert score(half, F) == Decimal("97.5")
    odd = Counts(received=20, completed=20, completed_on_time=20, rated=32, satisfied=31)
    assert score(odd, F) == Decimal("98.8")  # 38.75 + 40 + 20 = 98.75 -> 98.8, not 98.7


def test_completion_is_capped_and_one_when_nothing_was_received() -> None:
    assert Counts(received=10, completed=30).completion == 1
    assert Counts(received=0, completed=7).completion == 1
    assert Counts(received=10, completed=4).completion_rate == 0.4


@pytest.mark.parametrize(
    ("completed", "rated", "ranked"), [(5, 5, True), (4, 5, False), (5, 4, False)]
)
def test_too_few_cases_are_not_ranked(completed: int, rated: int, ranked: bool) -> None:
    c = Counts(
        received=completed,
        completed=completed,
        completed_on_time=completed,
        rated=rated,
        satisfied=rated,
    )
    assert (score(c, F) is not None) is ranked
    result = by_org(
        [
            unit(
                "C-1",
                completed=completed,
                completed_on_time=completed,
                rated=rated,
                satisfied=rated,
                received=completed,
            )
        ]
    )["C-1"]
    assert (result.rank is not None) is ranked
    if not ranked:
        assert result.banner is None and result.reasons[-1].startswith("not ranked")


def test_on_time_edge_of_the_yellow_flag() -> None:
    # 16 of 20 is exactly 80 %: not below, no flag; 15 of 20 is below
    assert warnings(unit("C-1", completed_on_time=16), F) == []
    assert warnings(unit("C-1", completed_on_time=15), F) == ["on-time 75.0% < 80%"]
    # with fewer completed than the minimum, the rate says nothing
    few = unit("C-1", completed=4, completed_on_time=0, received=4)
    assert warnings(few, F) == []


def test_satisfaction_edge_of_the_yellow_flag() -> None:
    assert warnings(unit("C-1", satisfied=18), F) == []  # 90 % exactly
    assert warnings(unit("C-1", satisfied=17), F) == ["satisfaction 85.0% < 90%"]
    assert warnings(unit("C-1", rated=4, satisfied=0), F) == []


def test_completion_edge_of_the_yellow_flag() -> None:
    assert warnings(unit("C-1", received=40, completed=20), F) == []  # 50 % exactly
    assert warnings(unit("C-1", received=41, completed=20), F) == ["completion 48.8% < 50%"]
    # four received and none completed: too few to judge
    assert warnings(unit("C-1", received=4, completed=0, completed_on_time=0), F) == []


def test_one_red_case_is_enough_for_the_yellow_flag_and_costs_the_red_one() -> None:
    units = [unit("C-1", red_cases=1), unit("C-2", satisfied=19)]
    result = by_org(units)
    assert result["C-1"].banner is Banner.YELLOW
    assert result["C-1"].reasons == ["1 case(s) overdue at district level"]
    assert result["C-1"].rank == 1 and result["C-1"].score == Decimal("100.0")
    # its place goes to the best unit without a warning
    assert result["C-2"].banner is Banner.RED and result["C-2"].rank == 2
    assert result["C-2"].reasons[0].startswith("rank 2 of 2; place 1 among 1 qualifying")


def test_an_unranked_unit_with_a_red_case_is_still_warned() -> None:
    r = by_org([unit("C-1", completed=1, completed_on_time=1, rated=0, satisfied=0, red_cases=2)])
    assert r["C-1"].banner is Banner.YELLOW and r["C-1"].rank is None


def test_red_flag_needs_both_rates_at_95_percent() -> None:
    # 19 of 20 = 95 % exactly: enough
    assert by_org([unit("C-1", completed_on_time=19)])["C-1"].banner is Banner.RED
    assert by_org([unit("C-1", satisfied=19)])["C-1"].banner is Banner.RED
    # 37 of 39 = 94.9 %: ranked first, not commended, not warned either
    r = by_org([unit("C-1", completed=39, completed_on_time=37, received=39)])["C-1"]
    assert r.rank == 1 and r.banner is None and r.reasons == []


@pytest.mark.parametrize(("peers", "slots"), [(0, 0), (1, 1), (4, 1), (5, 1), (9, 1), (10, 2)])
def test_red_slots_are_a_fifth_of_the_ranked_peers_at_least_one(peers: int, slots: int) -> None:
    assert red_slots(peers, F) == slots


def test_ranks_share_ties_and_red_goes_to_every_unit_tied_within_the_slots() -> None:
    # ten communities: two red slots; three tie for first
    units = [unit(f"C-{i:02d}") for i in range(3)]
    units += [unit(f"C-{i:02d}", satisfied=19 - i % 2) for i in range(3, 10)]
    result = assess(units)
    ranks = [(r.unit.org_id, r.rank) for r in result]
    assert ranks[:3] == [("C-00", 1), ("C-01", 1), ("C-02", 1)]
    assert [r.rank for r in result[3:]] == [4, 4, 4, 7, 7, 7, 7]
    assert [r.unit.org_id for r in result if r.banner is Banner.RED] == ["C-00", "C-01", "C-02"]
    assert all(r.peers == 10 for r in result)


def test_peers_are_the_units_of_the_same_parent() -> None:
    units = [
        unit("C-A1", "S-A"),
        unit("C-A2", "S-A", satisfied=19),
        unit("C-B1", "S-B", satisfied=18),
        unit("C-B2", "S-B", satisfied=17),
    ]
    result = assess(units)
    assert [(r.unit.parent_id, r.unit.org_id, r.rank) for r in result] == [
        ("S-A", "C-A1", 1),
        ("S-A", "C-A2", 2),
        ("S-B", "C-B1", 1),
        ("S-B", "C-B2", 2),
    ]
    # each street commends its own best; C-B2 falls below 90 % satisfaction
    flags = {r.unit.org_id: r.banner for r in result}
    assert flags == {"C-A1": Banner.RED, "C-A2": None, "C-B1": None, "C-B2": Banner.YELLOW}
    # C-B1 is first of S-B but at 90 % satisfaction: not red


def test_unranked_units_come_last_in_their_parent() -> None:
    units = [unit("C-0", completed=0, completed_on_time=0), unit("C-9")]
    assert [r.unit.org_id for r in assess(units)] == ["C-9", "C-0"]


def test_one_level_and_each_unit_once() -> None:
    street = UnitMeasures(level=RankLevel.STREET, district_id="D-1", street_id="S-1")
    with pytest.raises(ValueError, match="one level"):
        assess([unit("C-1"), street])
    with pytest.raises(ValueError, match="each unit once"):
        assess([unit("C-1"), unit("C-1")])


def test_levels_name_their_units_and_parents() -> None:
    grid = UnitMeasures(
        level=RankLevel.GRID, district_id="D-1", street_id="S-1", community_id="C-1", grid_id="G"
    )
    assert (grid.org_id, grid.parent_id, grid.orgs) == ("G", "C-1", ["G", "C-1", "S-1", "D-1"])
    street = UnitMeasures(level=RankLevel.STREET, district_id="D-1", street_id="S-1")
    assert (street.org_id, street.parent_id) == ("S-1", "D-1")
    assert locate([grid], "S-1") == "street" and locate([grid], "X") is None
    ranked = assess([unit("C-1", "S-1"), unit("C-2", "S-2")])
    assert [r.unit.org_id for r in within(ranked, "S-2")] == ["C-2"]
    assert len(within(ranked, "D-1")) == 2 and len(within(ranked, None)) == 2


def test_rates_are_none_without_cases() -> None:
    empty = Counts()
    assert (empty.on_time_rate, empty.satisfaction_rate, empty.avg_resolve_hours) == (
        None,
        None,
        None,
    )
    c = Counts(completed=2, resolved=2, resolve_seconds=3 * 3600)
    assert c.avg_resolve_hours == 1.5


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-01", "2026-00", "1999-12", "", "x"])
def test_a_month_is_yyyy_mm(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(text)


def test_months_are_cut_at_local_midnight() -> None:
    start, end = month_bounds("2026-10", "Asia/Shanghai")
    assert start.isoformat() == "2026-10-01T00:00:00+08:00"
    assert end.isoformat() == "2026-11-01T00:00:00+08:00"
    # the last evening of September in Shanghai is still September: 15:59 UTC on the 30th
    assert datetime.fromisoformat("2026-09-30T15:59:59+00:00") < start
    assert datetime.fromisoformat("2026-09-30T16:00:00+00:00") == start
    december, january = month_bounds("2026-12", "Asia/Shanghai")
    assert january - december == timedelta(days=31)
    assert shift_month("2026-01", -1) == "2025-12" and shift_month("2026-12", 1) == "2027-01"
    assert months_back("2026-02", 4) == ["2025-11", "2025-12", "2026-01", "2026-02"]
