-- The points of party members and volunteers (casectl points, activities/points.py): the
-- claims that took an offered case carry the taker's role, and the taker's org is the
-- grid they are registered in. Few rows: staff claims carry no role.

CREATE INDEX case_events_taken ON case_events ((payload -> 'actor' ->> 'org'), occurred_at)
    INCLUDE (case_id)
    WHERE type = 'case_claimed' AND payload ? 'role';
