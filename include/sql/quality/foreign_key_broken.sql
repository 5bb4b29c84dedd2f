-- The count of a foreign key's orphaned rows when it is not zero; no row when the key holds.
-- {observed} is that count's source, a parenthesized query: the orphaned_foreign_key_rows
-- query, or the row hms-dr measured with it. The unused CTE names {batch} (the table's asset)
-- only because GX warns about a query that does not; it is never read. (No JOIN keyword here:
-- GX fills {batch} differently in queries that have one.)
WITH never_read AS (SELECT * FROM (SELECT * FROM {batch}) AS batch_rows LIMIT 0)
SELECT orphan_rows
FROM {observed} AS observed
WHERE orphan_rows <> 0;
