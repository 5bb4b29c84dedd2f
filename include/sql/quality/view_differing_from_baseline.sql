-- A view's row count and fingerprint when either differs from the baseline; no row when both are
-- equal. {observed} is their source, a parenthesized query: the view_fingerprint query, or the
-- row hms-dr measured with it. {baseline_rows} is an integer, {baseline_fingerprint} a text
-- literal. The unused CTE names {batch} (the view_fingerprint asset) only because GX warns about
-- a query that does not; it is never read, so the fingerprint is computed once. (No JOIN keyword
-- here: GX fills {batch} differently in queries that have one.)
WITH never_read AS (SELECT * FROM (SELECT * FROM {batch}) AS batch_rows LIMIT 0)
SELECT row_count, fingerprint
FROM {observed} AS observed
WHERE row_count <> {baseline_rows}
   OR fingerprint <> {baseline_fingerprint};
