-- A lost workflow task's rows are superseded (migration 004): what they did to `cases`
-- and `ledger` is undone by deleting those rows, and the retried task's batch inserts
-- them again. The monthly counts follow: deleting a ledger row or a case's row takes back
-- what inserting it counted (same definitions as report_count_archived/_received).

CREATE FUNCTION report_uncount_archived() RETURNS trigger
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
        satisfied = satisfied
            - coalesce(OLD.satisfaction IN ('satisfied', 'very_satisfied'), false)::int,
        resolved = resolved - (done AND OLD.resolved_at IS NOT NULL)::int,
        resolve_seconds = resolve_seconds - CASE WHEN done AND OLD.resolved_at IS NOT NULL
             THEN round(extract(epoch FROM OLD.resolved_at - OLD.opened_at))::bigint
             ELSE 0 END
    WHERE month = report_month(OLD.archived_at) AND district_id = OLD.district_id
      AND street_id = OLD.street_id AND community_id = OLD.community_id
      AND grid_id = OLD.grid_id;
    RETURN NULL;
END $$;

CREATE FUNCTION report_uncount_received() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE report_months SET received = received - 1
    WHERE month = report_month(OLD.opened_at) AND district_id = OLD.district_id
      AND street_id = OLD.street_id AND community_id = OLD.community_id
      AND grid_id = OLD.grid_id;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_report_months_uncount AFTER DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION report_uncount_archived();
CREATE TRIGGER cases_report_months_uncount AFTER DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION report_uncount_received();
