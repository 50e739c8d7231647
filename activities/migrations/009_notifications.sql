-- The notification outbox: one row per notification a case's source system is owed
-- (domain/notifications.py), written in the transaction that appends the events
-- (activities/store.py), delivered by the notifier (notifier/) and never deleted.
--   pending:   waiting for its turn (the case's earlier ones first) or its next attempt
--   delivered: the webhook answered 2xx
--   parked:    failed CASE_NOTIFY_MAX_ATTEMPTS times; `casectl notifications retry`
--              puts it back to pending

CREATE TABLE notifications (
    id              text        PRIMARY KEY,  -- case_id:seq:hash prefix, the body's id
    case_id         text        NOT NULL,
    seq             integer     NOT NULL,
    source          text        NOT NULL,
    kind            text        NOT NULL,
    payload         jsonb       NOT NULL,     -- the body, without personal data
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'parked')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    parked_at       timestamptz
);
-- what the notifier claims: the pending ones that are due
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
-- a case's earlier pending ones (delivery in order per case)
CREATE INDEX notifications_case_pending ON notifications (case_id, seq) WHERE status = 'pending';
-- casectl notifications (parked first)
CREATE INDEX notifications_status ON notifications (status, created_at);
