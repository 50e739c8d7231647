"""The embedded stack for one machine (`make run`): the Temporal dev server, PostgreSQL,
the worker and the codec server, the demo cases, and the JSON Schema export of the
contract's models."""
