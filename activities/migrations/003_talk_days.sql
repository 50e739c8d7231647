-- Talk days (周二说事日): the agenda of each community's talk day, drawn up the day before
-- by the TalkDayAgenda workflow (workflows/agenda.py, activities/agenda.py), one row per
-- community and talk day, one item per case waiting for deliberation. A rerun of the
-- same agenda adds the cases that joined since and never duplicates one; an item is never
-- removed (a case that moved on is told and recorded as skipped, with the reason).
-- No personal data: the title and category of each case, never the reporter.

CREATE TABLE talk_agendas (
    community_id text        NOT NULL,
    talk_day     date        NOT NULL,  -- local date of the meeting
    time         text        NOT NULL CHECK (time ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'),
    place        text,
    item_count   integer     NOT NULL DEFAULT 0 CHECK (item_count >= 0),
    workflow_id  text        NOT NULL,  -- the TalkDayAgenda run that drew it up first
    run_id       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),  -- last run that added cases or results
    PRIMARY KEY (community_id, talk_day)
);
CREATE INDEX talk_agendas_day ON talk_agendas (talk_day);

CREATE TABLE talk_agenda_items (
    community_id text        NOT NULL,
    talk_day     date        NOT NULL,
    case_id      text        NOT NULL,
    position     integer     NOT NULL CHECK (position >= 1),  -- 1, 2, … in order of opening
    title        text        NOT NULL,
    category     text        NOT NULL,
    step         text        NOT NULL,  -- the case's step when it was put on the agenda
    opened_at    timestamptz NOT NULL,
    result       text        NOT NULL DEFAULT 'pending'
                             CHECK (result IN ('pending', 'scheduled', 'skipped')),
    reason       text,                  -- why the case refused its talk day (skipped)
    added_at     timestamptz NOT NULL DEFAULT now(),
    resulted_at  timestamptz,
    PRIMARY KEY (community_id, talk_day, case_id),
    UNIQUE (community_id, talk_day, position),
    FOREIGN KEY (community_id, talk_day) REFERENCES talk_agendas ON DELETE CASCADE
);
-- "which talk days was this case on?"
CREATE INDEX talk_agenda_items_case ON talk_agenda_items (case_id);
-- the waiting cases of a community (the agenda's query)
CREATE INDEX cases_waiting_for_deliberation ON cases (community_id, opened_at)
    WHERE archived_at IS NULL AND handling_class = 'self_governance'
      AND step IN ('collect', 'deliberate') AND level IS NOT NULL;
