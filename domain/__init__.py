"""The pure domain of the grievance loop: commands, events, the decider, the policy.

No I/O, no clock, no uuid, no temporalio, no asyncpg (docs/architecture.md, "Layers")."""
