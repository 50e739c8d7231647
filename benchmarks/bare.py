"""Bare Temporal, the yardstick of benchmarks/lifecycle.py: a workflow that takes the same
number of updates as a case's lifecycle and runs one no-op activity per update (and one
when it starts, as a case records its opening), with payloads of about the same sizes,
but no domain, no validator, no PostgreSQL, no codec, no search attributes, no UI
details: what the SDK and the server cost by themselves.

Payloads (measured on a case, see lifecycle.py): the update argument is the command the
case gets (60-130 bytes of JSON), the update result about 200 bytes (a CaseSummary is
185-206), the activity input about 2 KB (an EventBatch is 1.5-2.8 KB), its result about
100 bytes (Appended).

    python benchmarks/bare.py        # one worker process; env TEMPORAL_ADDRESS, CASE_TASK_QUEUE

Started with `"clocks": true` in its input, it also writes the history events a case adds
to them by contract (what `bare_clocks` in lifecycle.py measures): a search-attribute
upsert after each activity (8, like the case's CaseStep, DueAt, ... columns) and a
deadline timer for each of the first five steps, cancelled by the next update (the case's
5 timers started and 5 cancelled). Not the case's two markers (its policy's local
activity, a patch).

The workflow is kept in this module, whose top level imports nothing but the SDK: the
sandbox re-imports it for each run, as it would a user's workflow module.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

WORKFLOW = "BareWorkflow"
UPDATE = "step"
BATCH_PAD = 2000  # bytes of activity input, like an EventBatch
SUMMARY_PAD = 150  # bytes of padding in the update result, like a CaseSummary
STEP = SearchAttributeKey.for_keyword("CaseStep")  # registered by the benchmark, as for cases
TIMED_STEPS = 5  # steps with a deadline timer in "clocks" mode


@activity.defn(name="bare_noop")
async def noop(batch: dict[str, Any]) -> dict[str, Any]:
    return {"inserted": 1, "head_seq": batch["seq"], "head_hash": "0" * 64}


@workflow.defn(name=WORKFLOW)
class BareWorkflow:
    def __init__(self) -> None:
        self._seq = 0
        self._done = False
        self._clocks = False
        self._timed = 0  # the step whose timer runs

    @workflow.run
    async def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._clocks = bool(payload.get("clocks"))
        await self._record(payload)
        while self._clocks and self._seq <= TIMED_STEPS and not self._done:
            self._timed = self._seq
            try:  # a timer per step, cancelled when the next update moves the workflow on
                await workflow.wait_condition(
                    lambda: self._seq != self._timed, timeout=timedelta(days=1)
                )
            except TimeoutError:
                pass
        await workflow.wait_condition(lambda: self._done and workflow.all_handlers_finished())
        return {"case_id": workflow.info().workflow_id, "events": self._seq}

    @workflow.update(name=UPDATE)
    async def step(self, payload: dict[str, Any]) -> dict[str, Any]:
        await self._record(payload)
        self._done = bool(payload.get("last"))
        return {
            "case_id": workflow.info().workflow_id,
            "version": self._seq,
            "pad": "s" * SUMMARY_PAD,
        }

    async def _record(self, payload: dict[str, Any]) -> None:
        self._seq += 1
        await workflow.execute_activity(
            noop,
            {"seq": self._seq, "command": payload, "pad": "b" * BATCH_PAD},
            start_to_close_timeout=timedelta(seconds=10),
        )
        if self._clocks:
            workflow.upsert_search_attributes([STEP.value_set(f"step-{self._seq}")])


def replay(histories: list[tuple[str, str | bytes]]) -> int:
    """Replay (workflow id, history) pairs of BareWorkflow in this process, as `casectl
    audit replay` replays cases (one replayer, no sandbox); the number replayed. A history
    is JSON (str) or the History protobuf message's bytes. The yardstick of
    benchmarks/audit_replay.py."""
    import asyncio
    from collections.abc import AsyncIterator

    from temporalio.api.history.v1 import History
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for workflow_id, data in histories:
            if isinstance(data, bytes):
                yield WorkflowHistory(workflow_id, History.FromString(data).events)
            else:
                yield WorkflowHistory.from_json(workflow_id, data)

    async def work() -> int:
        replayer = Replayer(workflows=[BareWorkflow], workflow_runner=UnsandboxedWorkflowRunner())
        replayed = 0
        async with replayer.workflow_replay_iterator(feed()) as results:
            async for result in results:
                if result.replay_failure is not None:
                    raise result.replay_failure
                replayed += 1
        return replayed

    return asyncio.run(work())


async def _serve() -> None:
    """A worker of BareWorkflow with the SDK's defaults (sandbox, JSON converter), stopped
    by SIGTERM or SIGINT like worker.py."""
    import asyncio
    import os
    import signal

    from bare import BareWorkflow, noop  # the module, not __main__: the sandbox imports it
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=os.environ.get("CASE_TASK_QUEUE", "bench-bare"),
        workflows=[BareWorkflow],
        activities=[noop],
        graceful_shutdown_timeout=timedelta(seconds=10),
    ):
        print(f"bare worker {os.getpid()} serving", flush=True)
        await stop.wait()


if __name__ == "__main__":
    import asyncio
    import os
    import sys

    asyncio.run(_serve())
    # without interpreter finalization: the SDK's runtime threads may abort it
    # ("PyGILState_Release ... finalizing", temporalio/sdk-python#300), exit status -6
    sys.stdout.flush()
    os._exit(0)
