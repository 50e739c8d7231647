"""I/O of the case loop: the PostgreSQL event store, read model and ledger (DESIGN.md §4).

Workflow code imports only `activities.contract` (names and payload models), never the
implementations, which need asyncpg and the network."""
