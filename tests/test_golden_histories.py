"""Golden histories: lifecycles recorded by earlier generations of the workflow code
(tests/golden/v*/), replayed against today's code. A change that would break running
cases fails here; record.py in that folder says how a new generation is added."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import temporalio.workflow
from temporalio.worker import Replayer

from caseloop.audit import Replayed, history_files, load_history, replay
from infra.crypto import Keyring, data_converter
from worker import SANDBOX
from workflows.case import GENERATION_5, PATCH_OPENED_AT_START, PATCH_POLICY_LOCAL, CaseWorkflow
from workflows.department import PATCH_DEPARTMENT_TASKS

GOLDEN = Path(__file__).parent / "golden"
CONVERTER = data_converter(Keyring.parse((GOLDEN / "keyring.txt").read_text().strip()))
FILES = list(history_files([GOLDEN]))
LIFECYCLES = ("plain", "reopened", "escalated", "withdrawn")
# recorded from v3 on: departments summoned (DepartmentTask children), a talk day
SOCIAL = ("joint", "talkday")


def test_every_generation_holds_every_lifecycle() -> None:
    generations = sorted({f.parent.name for f in FILES})
    assert generations[:3] == ["v1", "v2", "v3"]
    for generation in generations:
        names = sorted(f.stem.rsplit("-", 1)[1] for f in FILES if f.parent.name == generation)
        expected = LIFECYCLES if generation in ("v1", "v2") else LIFECYCLES + SOCIAL
        assert names == sorted(expected), generation


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}-{p.stem.rsplit('-')[-1]}")
async def test_golden_history_replays_in_the_worker_sandbox(path: Path) -> None:
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=CONVERTER, workflow_runner=SANDBOX)
    result = await replayer.replay_workflow(load_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def replayed(paths: list[Path]) -> dict[str, Replayed]:
    found = {}
    async for r in replay([(str(p), load_history(p)) for p in paths], CONVERTER):
        found[f"{Path(r.source).parent.name}-{r.workflow_id.rsplit('-', 1)[1]}"] = r
    return found


async def test_replay_derives_the_domain_events_of_each_lifecycle() -> None:
    found = await replayed(FILES)
    for key, r in found.items():
        types = [e.type for e in r.events]
        assert r.failure is None and r.closed, key
        assert [e.seq for e in r.events] == list(range(1, len(types) + 1)), key
        assert types[0] == "case_opened" and types[-1] == "case_archived", key
        assert all(e.policy_version for e in r.events if hasattr(e, "policy_version")), key
    for generation in ("v1", "v2"):
        assert [e.type for e in found[f"{generation}-escalated"].events].count(
            "case_escalated"
        ) == 2
        assert "case_reopened" in [e.type for e in found[f"{generation}-reopened"].events]
        assert "case_withdrawn" in [e.type for e in found[f"{generation}-withdrawn"].events]
    # two generations of code derived the same events from the same commands
    for lifecycle in LIFECYCLES:
        v1, v2 = found[f"v1-{lifecycle}"].events, found[f"v2-{lifecycle}"].events
        assert [e.type for e in v1] == [e.type for e in v2]
    joint = [e.type for e in found["v3-joint"].events]
    assert joint.count("department_reported") == 2
    assert "department_warned" in joint and "department_escalated" in joint
    talkday = [e.type for e in found["v3-talkday"].events]
    assert ["deliberation_scheduled", "deliberation_recorded", "deadline_started"] == [
        t for t in talkday if t.startswith(("deliberation", "deadline_started"))
    ]


@pytest.fixture
def patch_forced(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The change deployed without its `workflow.patched` guard: the new branch always."""
    real = temporalio.workflow.patched
    monkeypatch.setattr(
        temporalio.workflow, "patched", lambda id, **kw: id == PATCH_POLICY_LOCAL or real(id)
    )
    yield


async def test_the_change_without_its_patch_breaks_running_cases(patch_forced: None) -> None:
    """v1 histories loaded the policy with a remote activity: code that always takes the
    local-activity branch is caught as non-deterministic, each history named."""
    found = await replayed([f for f in FILES if f.parent.name == "v1"])
    assert sorted(found) == sorted(f"v1-{name}" for name in LIFECYCLES)
    for key, r in found.items():
        assert r.failure is not None and "Nondeterminism" in r.failure, key
        assert r.events == [], key


def without(monkeypatch: pytest.MonkeyPatch, patch: str) -> None:
    """Code without the branch of `patch` (the patch removed too early): the old way only."""
    real = temporalio.workflow.patched
    monkeypatch.setattr(temporalio.workflow, "patched", lambda id, **kw: id != patch and real(id))


@pytest.mark.parametrize(
    ("patch", "newer", "older"),
    [
        # v2 loads the policy with a local activity
        (PATCH_POLICY_LOCAL, ("v2",), ("v1",)),
        # v4 stamps the opening with the first activation's time
        (PATCH_OPENED_AT_START, ("v4",), ("v3",)),
        # v5 records by a local activity and keeps one timer per wake time
        (GENERATION_5, ("v5", "v6"), ("v3", "v4")),  # v6: the same code, policy 2026.3
    ],
)
async def test_removing_a_branch_breaks_the_cases_that_took_it(
    monkeypatch: pytest.MonkeyPatch, patch: str, newer: tuple[str, ...], older: tuple[str, ...]
) -> None:
    without(monkeypatch, patch)
    found = await replayed([f for f in FILES if f.parent.name in newer])
    assert found and all(r.failure and "Nondeterminism" in r.failure for r in found.values())
    untouched = await replayed([f for f in FILES if f.parent.name in older])
    assert untouched and all(r.failure is None for r in untouched.values())


async def test_a_history_with_department_tasks_needs_their_branch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The joint case started child workflows: without that branch its history no longer
    replays; histories without summoned departments (all of v1 and v2) are not touched."""
    without(monkeypatch, PATCH_DEPARTMENT_TASKS)
    found = await replayed([f for f in FILES if f.parent.name == "v3"])
    assert found["v3-joint"].failure is not None
    assert "Nondeterminism" in found["v3-joint"].failure
    assert all(r.failure is None for key, r in found.items() if key != "v3-joint")
