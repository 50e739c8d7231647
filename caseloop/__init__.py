"""The Python client API other systems import: open, drive and read cases
(caseloop.client), the audit replay of exported histories (caseloop.audit), and the
communities' talk-day schedules (caseloop.talkday_schedules)."""
