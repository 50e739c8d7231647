-- Events recorded by a local activity whose workflow task was then lost (the worker died
-- before Temporal recorded the task): the case's history never saw them, and the retried
-- task decides the same command again, at its own time. Its events replace the lost
-- ones in case_events; the lost ones are kept here, never deleted, for the audit.
--
-- decided_in: the length of the case's history when the workflow decided the batch; a
-- later task of the same run has a longer history, so it may replace what an earlier
-- one left, never the reverse (a stale attempt that still writes gets a conflict).

ALTER TABLE case_events ADD COLUMN decided_in integer;

CREATE TABLE superseded_events (
    case_id        text        NOT NULL,
    seq            integer     NOT NULL,
    type           text        NOT NULL,
    payload        jsonb       NOT NULL,
    occurred_at    timestamptz NOT NULL,
    run_id         text        NOT NULL,
    command_id     text,
    prev_hash      char(64)    NOT NULL,
    hash           char(64)    NOT NULL,
    recorded_at    timestamptz NOT NULL,
    decided_in     integer     NOT NULL,
    superseded_at  timestamptz NOT NULL DEFAULT now(),
    superseded_in  integer     NOT NULL,  -- decided_in of the batch that replaced it
    PRIMARY KEY (case_id, seq, hash)
);
