-- The monthly red/yellow flag ranking (红黄旗) and the operators' lists
-- (activities/reports.py, casectl report; measured by benchmarks/report_queries.py).
--
-- report_months: per grid and month (in report_settings.timezone), the counts of the
-- cases received (opened) and archived, kept by triggers in the same transaction as the
-- row of `cases` or `ledger` that causes them, so it never disagrees with them. A month of
-- a level reads one row per grid (3,000 rows however many cases): 5-16 ms p50 at
-- 1,000,000 archived cases, against 93-196 ms for the same counts from the ledger's own
-- rows (`casectl report monthly --from-ledger`), on the 2-core test machine under load
-- (benchmarks/results/report_queries.json). Rows written before this migration are
-- counted by report_rebuild() below.

CREATE TABLE report_settings (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    -- months are cut at local midnight here; change it with report_rebuild('Zone/Name')
    timezone text    NOT NULL DEFAULT 'Asia/Shanghai'
        CHECK ((timestamptz '2000-01-01 00:00+00' AT TIME ZONE timezone) IS NOT NULL)
);
INSERT INTO report_settings DEFAULT VALUES;

CREATE TABLE report_months (
    month             text    NOT NULL,  -- YYYY-MM in report_settings.timezone
    district_id       text    NOT NULL,
    street_id         text    NOT NULL,
    community_id      text    NOT NULL,
    grid_id           text    NOT NULL,
    received          integer NOT NULL DEFAULT 0,  -- opened in the month
    archived          integer NOT NULL DEFAULT 0,  -- archived in the month, any outcome
    completed         integer NOT NULL DEFAULT 0,  -- … with outcome completed
    completed_on_time integer NOT NULL DEFAULT 0,  -- … and on time
    escalated         integer NOT NULL DEFAULT 0,  -- archived, escalated at least once
    reopened          integer NOT NULL DEFAULT 0,  -- archived, reopened at least once
    returned          integer NOT NULL DEFAULT 0,  -- archived, returned at least once
    rated             integer NOT NULL DEFAULT 0,  -- archived with a satisfaction
    satisfied         integer NOT NULL DEFAULT 0,  -- … satisfied or very satisfied
    resolved          integer NOT NULL DEFAULT 0,  -- completed with a resolution time
    resolve_seconds   bigint  NOT NULL DEFAULT 0,  -- their seconds from opening to it
    PRIMARY KEY (month, district_id, street_id, community_id, grid_id)
);

CREATE FUNCTION report_month(at timestamptz) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT to_char(at AT TIME ZONE (SELECT timezone FROM report_settings), 'YYYY-MM') $$;

-- One archived case's counts: the ranking's definitions, row by row (activities/reports.py
-- holds the same as aggregates over the ledger; a test checks they agree).
CREATE FUNCTION report_count_archived() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    done boolean := NEW.outcome = 'completed';
BEGIN
    INSERT INTO report_months AS r (month, district_id, street_id, community_id, grid_id,
        archived, completed, completed_on_time, escalated, reopened, returned, rated,
        satisfied, resolved, resolve_seconds)
    VALUES (report_month(NEW.archived_at), NEW.district_id, NEW.street_id,
        NEW.community_id, NEW.grid_id,
        1,
        done::int,
        (done AND NEW.on_time)::int,
        (NEW.escalation_count > 0)::int,
        (NEW.reopen_count > 0)::int,
        (NEW.return_count > 0)::int,
        (NEW.satisfaction IS NOT NULL)::int,
        coalesce(NEW.satisfaction IN ('satisfied', 'very_satisfied'), false)::int,
        (done AND NEW.resolved_at IS NOT NULL)::int,
        CASE WHEN done AND NEW.resolved_at IS NOT NULL
             THEN round(extract(epoch FROM NEW.resolved_at - NEW.opened_at))::bigint
             ELSE 0 END)
    ON CONFLICT (month, district_id, street_id, community_id, grid_id) DO UPDATE SET
        archived = r.archived + 1,
        completed = r.completed + EXCLUDED.completed,
        completed_on_time = r.completed_on_time + EXCLUDED.completed_on_time,
        escalated = r.escalated + EXCLUDED.escalated,
        reopened = r.reopened + EXCLUDED.reopened,
        returned = r.returned + EXCLUDED.returned,
        rated = r.rated + EXCLUDED.rated,
        satisfied = r.satisfied + EXCLUDED.satisfied,
        resolved = r.resolved + EXCLUDED.resolved,
        resolve_seconds = r.resolve_seconds + EXCLUDED.resolve_seconds;
    RETURN NULL;
END $$;

CREATE FUNCTION report_count_received() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO report_months AS r (month, district_id, street_id, community_id, grid_id,
        received)
    VALUES (report_month(NEW.opened_at), NEW.district_id, NEW.street_id, NEW.community_id,
        NEW.grid_id, 1)
    ON CONFLICT (month, district_id, street_id, community_id, grid_id) DO UPDATE SET
        received = r.received + 1;
    RETURN NULL;
END $$;

-- The ledger is written once per case (ON CONFLICT DO NOTHING: a retry inserts nothing
-- and fires nothing); a case's row in `cases` is inserted once, then only updated.
CREATE TRIGGER ledger_report_months AFTER INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION report_count_archived();
CREATE TRIGGER cases_report_months AFTER INSERT ON cases
    FOR EACH ROW EXECUTE FUNCTION report_count_received();

-- Count everything again (in another timezone when one is given): run at this migration
-- for the rows already there, and by hand after a change of the office's timezone.
CREATE FUNCTION report_rebuild(zone text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    counted bigint;
BEGIN
    LOCK TABLE ledger, cases IN SHARE MODE;  -- no case opened or archived meanwhile
    IF zone IS NOT NULL THEN
        UPDATE report_settings SET timezone = zone;
    END IF;
    DELETE FROM report_months;
    INSERT INTO report_months (month, district_id, street_id, community_id, grid_id,
        received, archived, completed, completed_on_time, escalated, reopened, returned,
        rated, satisfied, resolved, resolve_seconds)
    SELECT month, district_id, street_id, community_id, grid_id,
           sum(received), sum(archived), sum(completed), sum(completed_on_time),
           sum(escalated), sum(reopened), sum(returned), sum(rated), sum(satisfied),
           sum(resolved), sum(resolve_seconds)
    FROM (
        SELECT report_month(archived_at) AS month, district_id, street_id, community_id,
               grid_id, 0 AS received, 1 AS archived,
               (outcome = 'completed')::int AS completed,
               (outcome = 'completed' AND on_time)::int AS completed_on_time,
               (escalation_count > 0)::int AS escalated,
               (reopen_count > 0)::int AS reopened,
               (return_count > 0)::int AS returned,
               (satisfaction IS NOT NULL)::int AS rated,
               coalesce(satisfaction IN ('satisfied', 'very_satisfied'), false)::int
                   AS satisfied,
               (outcome = 'completed' AND resolved_at IS NOT NULL)::int AS resolved,
               CASE WHEN outcome = 'completed' AND resolved_at IS NOT NULL
                    THEN round(extract(epoch FROM resolved_at - opened_at))::bigint
                    ELSE 0 END AS resolve_seconds
        FROM ledger
        UNION ALL
        SELECT report_month(opened_at), district_id, street_id, community_id, grid_id,
               1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        FROM cases
    ) AS one_row_per_count
    GROUP BY month, district_id, street_id, community_id, grid_id;
    GET DIAGNOSTICS counted = ROW_COUNT;
    RETURN counted;
END $$;
SELECT report_rebuild();

-- --from-ledger and the trend's fallback: a month of the ledger in one index-only range
-- scan (insert-only: autovacuum keeps the visibility map set), and the cases opened in it.
-- Replaces ledger_month_street, a prefix of it.
CREATE INDEX ledger_archived_measures ON ledger (archived_at)
    INCLUDE (district_id, street_id, community_id, grid_id, outcome, on_time,
             escalation_count, reopen_count, return_count, satisfaction, opened_at,
             resolved_at);
DROP INDEX ledger_month_street;
CREATE INDEX cases_opened ON cases (opened_at)
    INCLUDE (district_id, street_id, community_id, grid_id);

-- Cases that have been red (overdue at district level; a case's flag never goes back),
-- and the time each went red.
CREATE INDEX cases_red ON cases (archived_at)
    INCLUDE (case_id, opened_at, district_id, street_id, community_id, grid_id)
    WHERE flag = 'red';
CREATE INDEX case_events_red ON case_events (case_id, occurred_at)
    WHERE type = 'deadline_breached' AND payload ->> 'flag' = 'red';

-- The operators' screen: a street's or community's open cases by due time.
CREATE INDEX cases_open_street_due ON cases (street_id, due_at) WHERE archived_at IS NULL;
CREATE INDEX cases_open_community_due ON cases (community_id, due_at)
    WHERE archived_at IS NULL;

-- The org ids nest (a grid lies in one community, …): without these the planner takes
-- the combinations as independent, expects 100x the groups and sorts where a hash does.
CREATE STATISTICS ledger_orgs (ndistinct, dependencies)
    ON district_id, street_id, community_id, grid_id FROM ledger;
CREATE STATISTICS cases_orgs (ndistinct, dependencies)
    ON district_id, street_id, community_id, grid_id FROM cases;
