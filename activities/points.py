"""The events the points of party members and volunteers are computed from
(domain/points.py): the cases a grid's takers claimed, archived in a range, read from
`case_events` (migration 006 indexes the claims that carry a taker's role).

Only the event types the points need are read, never `case_opened` (whose personal fields
may be sealed): the case's grid comes from its opening's location, which is not sealed.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from domain.events import EVENTS, Event
from domain.points import POINTS_EVENT_TYPES, CaseEvents

TAKEN_SQL = """
    WITH taken AS (
        -- claims by a party member or volunteer registered in the grid, before the end
        SELECT DISTINCT case_id FROM case_events
        WHERE type = 'case_claimed' AND payload ? 'role'
          AND payload -> 'actor' ->> 'org' = $1 AND occurred_at < $3
    ), archived AS (
        -- … of cases archived in the range, with the grid of their opening
        SELECT t.case_id, o.payload -> 'case' -> 'location' ->> 'grid_id' AS grid_id
        FROM taken AS t
        JOIN case_events AS o ON o.case_id = t.case_id AND o.seq = 1
        WHERE EXISTS (SELECT FROM case_events AS a
                      WHERE a.case_id = t.case_id AND a.type = 'case_archived'
                        AND a.occurred_at >= $2 AND a.occurred_at < $3)
    )
    SELECT a.case_id, a.grid_id, e.seq, e.payload
    FROM archived AS a
    JOIN case_events AS e ON e.case_id = a.case_id
    WHERE e.type = ANY($4::text[])
    ORDER BY a.case_id, e.seq"""


async def taken_cases(
    pool: asyncpg.Pool, grid_id: str, since: datetime, until: datetime
) -> list[CaseEvents]:
    """The cases a party member or volunteer of `grid_id` took that were archived in
    [since, until), each with its grid and the events the points need, in order."""
    rows = await pool.fetch(TAKEN_SQL, grid_id, since, until, list(POINTS_EVENT_TYPES))
    cases: dict[str, tuple[str, list[Event]]] = {}
    for r in rows:
        _, events = cases.setdefault(r["case_id"], (r["grid_id"], []))
        events.append(EVENTS.validate_python({**r["payload"], "seq": r["seq"]}))
    return [
        CaseEvents(case_id=case_id, grid_id=grid, events=events)
        for case_id, (grid, events) in cases.items()
    ]
