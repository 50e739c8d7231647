"""The cohort formulas as pure functions: attribution, rates, score, flags, selection."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from domain.formulas import (
    BEIJING_12345_2026_1,
    CONTEST_2026_1,
    FORMULAS,
    SATISFIED,
    CohortMeasures,
    Holder,
    assess_rates,
    counts_against,
    formula_from_json,
    formula_name,
    formula_named,
    holder,
    rate_score,
    satisfied,
)
from domain.model import Satisfaction
from domain.ranking import FLAGS_2026_1, Banner, RankLevel


def unit(org: str, parent: str = "S1", **counts: Any) -> CohortMeasures:
    return CohortMeasures(
        level=RankLevel.COMMUNITY,
        district_id="D1",
        street_id=parent,
        community_id=org,
        **counts,
    )


def good(org: str, parent: str = "S1", **more: Any) -> CohortMeasures:
    base = dict(opened=10, received=10, contacted=10, responded=10, completed=10, rated=10)
    return unit(org, parent, **(base | {"satisfied": 10} | more))


def test_basically_satisfied_is_satisfied() -> None:
    assert "basically_satisfied" in SATISFIED and satisfied("basically_satisfied")
    assert not satisfied("unsatisfied") and not satisfied(None)
    assert set(SATISFIED) == {s.value for s in Satisfaction if s.content}


@pytest.mark.parametrize(
    ("level", "loop", "expected"),
    [
        ("community", "micro_grid", Holder.GRID),
        ("community", "grid", Holder.GRID),
        ("street", "street", Holder.STREET),
        ("district", "district", Holder.DISTRICT),
        ("community", None, Holder.COMMUNITY),
        ("street", None, Holder.STREET),
        ("district", None, Holder.DISTRICT),
        (None, None, None),
    ],
)
def test_the_unit_that_held_the_case(
    level: str | None, loop: str | None, expected: Holder | None
) -> None:
    assert holder(level, loop) is expected


def test_a_breach_counts_against_its_holder_and_above_never_below() -> None:
    # the street let it run out: not the community's, not the grid's
    assert counts_against(Holder.STREET, RankLevel.STREET)
    assert not counts_against(Holder.STREET, RankLevel.COMMUNITY)
    assert not counts_against(Holder.STREET, RankLevel.GRID)
    # the grid's loop ran out: the grid's, and its community's and street's
    assert all(counts_against(Holder.GRID, level) for level in RankLevel)
    # the district's own clock (red): no ranked unit's
    assert not any(counts_against(Holder.DISTRICT, level) for level in RankLevel)
    assert not counts_against(None, RankLevel.STREET)


def test_score_weights_the_rates() -> None:
    # completion 8/10, satisfaction 9/10: 50·0.8 + 50·0.9 = 85
    u = good("C1", completed=8, rated=10, satisfied=9)
    assert rate_score(u, CONTEST_2026_1) == Decimal("85.0")
    # response 6/10, resolution 8/10, satisfaction 9/10: 10·0.6 + 45·0.8 + 45·0.9 = 82.5
    u = good("C1", responded=6, completed=8, satisfied=9)
    assert rate_score(u, BEIJING_12345_2026_1) == Decimal("82.5")
    # too few rated: not ranked
    assert rate_score(good("C1", rated=4, satisfied=4), CONTEST_2026_1) is None


def test_flags_of_a_street() -> None:
    units = [
        good("C1"),  # perfect: commended
        good("C2", completed=9, satisfied=9, rated=9),  # second
        good("C3", satisfied=8),  # 80 % satisfied: warned
        good("C4", breaches=2),  # 2 breaches held in 10 received: warned
        good("C5", received=3, opened=3, completed=3, rated=3, satisfied=3),  # too few
    ]
    ranked = {r.org_id: r for r in assess_rates(units, CONTEST_2026_1)}
    assert ranked["C1"].banner is Banner.RED and ranked["C1"].rank == 1
    assert ranked["C2"].banner is None and ranked["C2"].rank == 3  # C4 ties C1 at 100
    assert ranked["C3"].banner is Banner.YELLOW
    assert ranked["C3"].reasons == ["satisfaction 80.0% < 90%"]
    assert ranked["C4"].banner is Banner.YELLOW and "2 breaches held" in ranked["C4"].reasons[0]
    assert ranked["C5"].rank is None and "not ranked" in ranked["C5"].reasons[-1]
    assert ranked["C1"].rates == {"completion": Decimal("1"), "satisfaction": Decimal("1")}
    assert all(r.peers == 4 for r in ranked.values())


def test_units_of_one_level_once() -> None:
    with pytest.raises(ValueError, match="each unit once"):
        assess_rates([good("C1"), good("C1")], CONTEST_2026_1)


def test_formulas_by_version_and_name() -> None:
    assert formula_named("contest") is CONTEST_2026_1
    assert formula_named("beijing-12345-2026.1") is BEIJING_12345_2026_1
    assert formula_named("flags") is FLAGS_2026_1 and formula_name(FLAGS_2026_1) == "flags"
    with pytest.raises(ValueError, match=r"known: flags-2026\.1"):
        formula_named("contest-2099.9")
    assert set(FORMULAS) == {"flags-2026.1", "contest-2026.1", "beijing-12345-2026.1"}


@pytest.mark.parametrize("formula", [CONTEST_2026_1, BEIJING_12345_2026_1])
def test_rules_name_the_counts_and_the_cohort(formula: Any) -> None:
    text = "\n".join(formula.rules())
    assert "cohort: the cases opened in the month" in text
    assert "basically satisfied" in text
    for rate in formula.rates:
        assert f"{rate.numerator} / {rate.denominator}" in text
    assert sum(r.weight for r in formula.rates) == 100


def test_a_formula_kept_as_data() -> None:
    data = CONTEST_2026_1.model_dump(mode="json")
    data["version"] = "contest-2027.1"
    data["rates"][0]["weight"], data["rates"][1]["weight"] = 40, 60
    mine = formula_from_json(json.dumps(data))
    assert mine.version == "contest-2027.1" and [r.weight for r in mine.rates] == [40, 60]
    # a built-in version with other numbers: a change is a new version
    data["version"] = "contest-2026.1"
    with pytest.raises(ValueError, match="built in with other numbers"):
        formula_from_json(json.dumps(data))
    # the fields are checked, each error naming its field
    for change, message in (
        ({"version": "other-2027.1"}, "version: must start with the name"),
        ({"rates": []}, "at least one"),
        ({"response_hours": 0}, "response_hours"),
    ):
        with pytest.raises(ValueError, match=message):
            formula_from_json(json.dumps(data | {"version": "contest-2027.2"} | change))
    bad_count = json.loads(json.dumps(data))
    bad_count["version"] = "contest-2027.3"
    bad_count["rates"][0]["numerator"] = "happy"
    with pytest.raises(ValueError, match="'happy' is not a count"):
        formula_from_json(json.dumps(bad_count))
    assert formula_from_json(CONTEST_2026_1.model_dump_json()) == CONTEST_2026_1
