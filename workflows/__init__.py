"""CaseWorkflow: one durable workflow per case (DESIGN.md §1, §3)."""
