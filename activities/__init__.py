"""I/O of the case loop: the PostgreSQL event store, read model and ledger
(docs/architecture.md, "The event store and hash chain").

Workflow code imports only `activities.contract` (names and payload models), never the
implementations, which need asyncpg and the network."""
