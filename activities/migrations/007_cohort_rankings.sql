-- The rankings a 12345 operator accepts (domain/formulas.py, activities/reports.py):
--
-- 1. "Satisfied" has one definition: the resident is content (domain.model.Satisfaction
--    .content: very satisfied, satisfied or basically satisfied; only "unsatisfied" is
--    not). report_satisfied() says it in SQL, and the monthly summary's triggers and
--    report_rebuild() use it; a test checks it agrees with the domain for every value.
--    Migration 002 counted "basically satisfied" as not satisfied: the summary is
--    counted again below.
-- 2. The time of first contact (the handler's first claim or check-in): the response
--    rate of the 12345 formula needs it. Filled on the projection (activities/store.py)
--    in the transaction that appends the claim or check-in; rows already there get it
--    from their events below, and stay NULL when they have none (never contacted).

CREATE FUNCTION report_satisfied(satisfaction text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT coalesce(satisfaction IN ('very_satisfied', 'satisfied',
                                            'basically_satisfied'), false) $$;

CREATE OR REPLACE FUNCTION report_count_archived() RETURNS trigger
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
        report_satisfied(NEW.satisfaction)::int,
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

CREATE OR REPLACE FUNCTION report_uncount_archived() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    done boolean := OLD.outcome = 'completed';
BEGIN
    UPDATE report_months SET
        archived = archived - 1,
        completed = completed - done::int,
        completed_on_time = completed_on_time - (done AND OLD.on_time)::int,
        escalated = escalated - (OLD.escalation_count > 0)::int,
        reopened = reopened - (OLD.reopen_count > 0)::int,
        returned = returned - (OLD.return_count > 0)::int,
        rated = rated - (OLD.satisfaction IS NOT NULL)::int,
        satisfied = satisfied - report_satisfied(OLD.satisfaction)::int,
        resolved = resolved - (done AND OLD.resolved_at IS NOT NULL)::int,
        resolve_seconds = resolve_seconds - CASE WHEN done AND OLD.resolved_at IS NOT NULL
             THEN round(extract(epoch FROM OLD.resolved_at - OLD.opened_at))::bigint
             ELSE 0 END
    WHERE month = report_month(OLD.archived_at) AND district_id = OLD.district_id
      AND street_id = OLD.street_id AND community_id = OLD.community_id
      AND grid_id = OLD.grid_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION report_rebuild(zone text DEFAULT NULL) RETURNS bigint
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
               report_satisfied(satisfaction)::int AS satisfied,
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

ALTER TABLE cases ADD COLUMN first_contact_at timestamptz;
ALTER TABLE ledger ADD COLUMN first_contact_at timestamptz;
WITH first_contact AS (
    SELECT case_id, min(occurred_at) AS at FROM case_events
    WHERE type IN ('case_claimed', 'handler_checked_in')
    GROUP BY case_id
)
UPDATE cases AS c SET first_contact_at = f.at FROM first_contact AS f
WHERE c.case_id = f.case_id;
UPDATE ledger AS l SET first_contact_at = c.first_contact_at FROM cases AS c
WHERE l.case_id = c.case_id AND c.first_contact_at IS NOT NULL;


-- The cohort of a month (activities/reports.py, cohort_sql) in two index range scans on
-- the time its cases were opened: `cases` (with the first contact; replaces cases_opened
-- of migration 002, a prefix of it) and the ledger (outcome and satisfaction).
CREATE INDEX cases_opened_cohort ON cases (opened_at)
    INCLUDE (district_id, street_id, community_id, grid_id, case_id, first_contact_at);
DROP INDEX cases_opened;
CREATE INDEX ledger_opened ON ledger (opened_at)
    INCLUDE (case_id, archived_at, outcome, satisfaction);
