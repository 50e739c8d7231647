"""CaseWorkflow: one durable workflow per case (docs/architecture.md)."""
