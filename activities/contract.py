"""Names and payloads of the activities, shared by the workflow and the worker.

This module imports only the domain: the workflow sandbox may load it."""

from __future__ import annotations

from pydantic import Field

from domain.events import Event
from domain.model import Frozen
from domain.state import CaseRecord, CaseState

LOAD_POLICY = "load_policy"
RECORD_EVENTS = "record_events"
MERGE_RECORDED = "merge_recorded"

# Error type of an append that contradicts what is stored (a different event under an
# existing seq, or a gap): retrying cannot help, an operator must look.
CHAIN_CONFLICT = "EventChainConflict"


class EventBatch(Frozen):
    """Events of one command (or one timer), appended in one transaction, with the state
    they lead to (for the read model) and the ledger record when the case is archived."""

    case_id: str
    run_id: str
    events: list[Event] = Field(min_length=1)
    state: CaseState
    record: CaseRecord | None = None
    # the length of the case's history when the batch was decided (recorded by a local
    # activity); None for batches of regular activities, which the history holds
    decided_in: int | None = None


class Appended(Frozen):
    inserted: int  # 0 when a retry found every event already stored
    head_seq: int
    head_hash: str


class MergeClaim(Frozen):
    """What a `merged_report` signal claims: that `merged_case_id` was merged into
    `target_case_id`. The target believes it only when the event store holds that case's
    `case_merged` event naming it (a signal carries no actor to check)."""

    merged_case_id: str
    target_case_id: str
