-- The Open311 gateway's queries of the read model (gateway/app.py): GET /requests.json
-- pages the cases opened in a span (at most 90 days), newest first, filtered by service,
-- by status (open: archived_at IS NULL) and, for the public list of closed cases, by
-- community. Each filter reads one index backwards from the span's end and stops at the
-- page's last row (benchmarks/gateway.py: at 1,000,000 cases). Without a filter,
-- cases_opened (migration 002) serves.
CREATE INDEX cases_category_opened ON cases (category, opened_at);
CREATE INDEX cases_open_opened ON cases (opened_at) WHERE archived_at IS NULL;
CREATE INDEX cases_closed_opened ON cases (opened_at) WHERE archived_at IS NOT NULL;
CREATE INDEX cases_closed_community_opened ON cases (community_id, opened_at)
    WHERE archived_at IS NOT NULL;
