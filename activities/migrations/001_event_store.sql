-- The event store (case_events), the read model (cases) and the ledger (台账).
-- DESIGN.md §4. case_id is the Temporal workflow id everywhere.

CREATE TABLE case_events (
    case_id     text        NOT NULL,
    seq         integer     NOT NULL CHECK (seq >= 1),
    type        text        NOT NULL,
    payload     jsonb       NOT NULL,
    occurred_at timestamptz NOT NULL,
    run_id      text        NOT NULL,
    command_id  text,
    prev_hash   char(64)    NOT NULL,
    hash        char(64)    NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, seq)
);
CREATE INDEX case_events_type_time ON case_events (type, occurred_at);

CREATE TABLE cases (
    case_id          text PRIMARY KEY,
    version          integer     NOT NULL,
    step             text        NOT NULL,
    level            text,
    severity         text,
    handling_class   text,
    flag             text        NOT NULL,
    category         text        NOT NULL,
    source           text        NOT NULL,
    grid_id          text        NOT NULL,
    community_id     text        NOT NULL,
    street_id        text        NOT NULL,
    district_id      text        NOT NULL,
    assignee         text,
    due_at           timestamptz,
    reopen_count     integer     NOT NULL,
    escalation_count integer     NOT NULL,
    return_count     integer     NOT NULL,
    opened_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    archived_at      timestamptz,
    outcome          text,
    state            jsonb       NOT NULL  -- CaseState without the reporter's personal data
);
CREATE INDEX cases_street_step ON cases (street_id, step);
CREATE INDEX cases_community_step ON cases (community_id, step);
CREATE INDEX cases_open_due ON cases (due_at) WHERE archived_at IS NULL;

CREATE TABLE ledger (
    case_id          text PRIMARY KEY,
    outcome          text        NOT NULL,
    source           text        NOT NULL,
    category         text        NOT NULL,
    grid_id          text        NOT NULL,
    community_id     text        NOT NULL,
    street_id        text        NOT NULL,
    district_id      text        NOT NULL,
    severity         text,
    handling_class   text,
    final_level      text,
    opened_at        timestamptz NOT NULL,
    dispatched_at    timestamptz,
    resolved_at      timestamptz,
    archived_at      timestamptz NOT NULL,
    on_time          boolean     NOT NULL,
    escalation_count integer     NOT NULL,
    reopen_count     integer     NOT NULL,
    return_count     integer     NOT NULL,
    satisfaction     text,
    merged_into      text,
    policy_version   text        NOT NULL
);
CREATE INDEX ledger_month_street ON ledger (archived_at, street_id);
