"""组织建单、党员接单 on the time-skipping test server, with the real worker and the event
store: the community offers a minor case to its grid, a volunteer of the grid takes it,
checks in and resolves it, and the points read back from `case_events` count it; a party
member of another grid is refused; a grid worker can still claim an offered case."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.points import taken_cases
from caseloop.client import CaseClient, CommandRefused
from domain.events import CaseClaimed, CaseOffered
from domain.model import Role, Step
from domain.points import tally, year_bounds
from policies import NOTHING_RAISED
from support import COMMUNITY, COMMUNITY_ADMIN, DISTRICT, RESIDENT, STREET, actor, report

MakeWorker = Callable[[Any], Worker]
SHANGHAI = "Asia/Shanghai"  # the built-in policy's timezone
MINOR = {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"}


def grid_of_its_own() -> tuple[str, dict[str, str]]:
    """A grid of this test's own in the usual community (the points are per grid)."""
    grid = f"G-{uuid.uuid4().hex[:8]}"
    location = {
        "grid_id": grid,
        "community_id": COMMUNITY,
        "street_id": STREET,
        "district_id": DISTRICT,
    }
    return grid, location


async def test_a_volunteer_of_the_grid_takes_an_offered_case_and_earns_its_points(
    ts_env: WorkflowEnvironment,
    ts_client: CaseClient,
    case_worker: MakeWorker,
    pool: asyncpg.Pool,
) -> None:
    client = ts_client
    grid, location = grid_of_its_own()
    volunteer = actor("volunteer", grid, "vol-1")
    grid_worker = actor("grid_worker", grid, "gw-1")
    stranger = actor("party_member", "G-elsewhere", "pm-9")
    async with case_worker(ts_env.client):
        case = (await client.open_case(report(location=location))).case_id
        await client.send(case, "dispatch", MINOR)
        with pytest.raises(CommandRefused, match="may not take the case") as not_offered:
            await client.send(case, "claim", {"actor": volunteer})
        offered = await client.send(
            case, "offer_case", {"actor": COMMUNITY_ADMIN, "note": "党员志愿者可接"}
        )
        with pytest.raises(CommandRefused, match="may not take the case") as elsewhere:
            await client.send(case, "claim", {"actor": stranger})
        taken = await client.send(case, "claim", {"actor": volunteer})
        with pytest.raises(CommandRefused, match="not allowed in step deliberate"):
            await client.send(case, "claim", {"actor": grid_worker})  # it is the volunteer's
        await client.send(case, "check_in", {"actor": volunteer})
        resolved = await client.send(
            case, "report_resolution", {"actor": volunteer, "summary": "灯已换好"}
        )
        await client.send(
            case,
            "record_feedback",
            {"actor": RESIDENT, "accepted": True, "satisfaction": "satisfied"},
        )
        await client.send(
            case,
            "record_revisit",
            {"actor": grid_worker, "satisfaction": "very_satisfied", "checklist": NOTHING_RAISED},
        )
        result = await client.result(case)
        state = await client.state(case)
        events = await client.events(case)

    assert "offered to their own grid" in str(not_offered.value)
    assert "pm-9 (party_member)" in str(elsewhere.value)
    assert offered.step is Step.COLLECT and offered.assignee is None
    assert taken.assignee == "vol-1" and taken.step is Step.DELIBERATE
    assert resolved.step is Step.FEEDBACK
    assert result.outcome.value == "completed" and result.grid_id == grid
    [offer] = [e for e in events if isinstance(e, CaseOffered)]
    assert offer.grid_id == grid and offer.note == "党员志愿者可接"
    [claim] = [e for e in events if isinstance(e, CaseClaimed)]
    assert (claim.handler, claim.role) == ("vol-1", Role.VOLUNTEER)
    assert state.offered and state.taken_by_role is Role.VOLUNTEER
    handled = ("handler_checked_in", "resolution_reported")
    assert [e.actor.id for e in events if e.type in handled and e.actor] == ["vol-1", "vol-1"]

    # the points of the month it was archived in, recomputed from case_events
    assert state.archived_at is not None
    month = state.archived_at.astimezone(ZoneInfo(SHANGHAI)).strftime("%Y-%m")
    year_start, _, end = year_bounds(month, SHANGHAI)
    [member] = tally(await taken_cases(pool, grid, year_start, end), grid, month, SHANGHAI)
    assert (member.member_id, member.role, member.cases) == ("vol-1", Role.VOLUNTEER, [case])
    assert (member.completed, member.on_time, member.points) == (1, 1, 3)


async def test_a_grid_worker_can_still_claim_an_offered_case(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    grid, location = grid_of_its_own()
    grid_worker = actor("grid_worker", grid, "gw-1")
    volunteer = actor("volunteer", grid, "vol-1")
    async with case_worker(ts_env.client):
        case = (await client.open_case(report(location=location))).case_id
        await client.send(case, "dispatch", MINOR)
        await client.send(case, "offer_case", {"actor": COMMUNITY_ADMIN})
        claimed = await client.send(case, "claim", {"actor": grid_worker})
        with pytest.raises(CommandRefused, match="is not the handler who claimed it"):
            await client.send(case, "check_in", {"actor": volunteer})
        await client.send(case, "check_in", {"actor": grid_worker})
        state = await client.state(case)
        events = await client.events(case)

    assert claimed.assignee == "gw-1"
    [claim] = [e for e in events if isinstance(e, CaseClaimed)]
    assert claim.role is None and state.taken_by_role is None and state.offered
    assert state.checked_in_at is not None
