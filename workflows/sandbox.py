"""The sandbox the workflows run in, for the worker and for every replay of their
histories (the golden histories, `casectl audit replay`)."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# The domain and the workflow module are loaded once, not once per workflow run (the
# re-import cost ~14 % of the worker's CPU per lifecycle, benchmarks/cpu_profile.py); the
# sandbox still runs each case apart, and the golden-history replays guard determinism.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "domain", "activities.contract", "activities.agenda_contract", "workflows", "rfc8785"
    )
)
