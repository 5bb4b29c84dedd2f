-- Row count and an order-independent fingerprint of one relation's rows: the sum, as numeric
-- (no overflow), of two 64-bit halves of md5(row::text). Equal multisets of rows give equal
-- sums whatever the scan order. {relation} is filled in as a quoted identifier by hms_dr.baseline;
-- the session settings that fix row::text (TimeZone, DateStyle, ...) are set before this runs.
SELECT count(*) AS row_count,
       coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text AS hash_sum_high,
       coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text AS hash_sum_low
FROM (SELECT md5(r::text) AS h FROM {relation} AS r) AS hashed;
