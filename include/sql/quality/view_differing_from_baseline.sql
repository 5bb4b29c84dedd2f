-- A view's row count and fingerprint when either differs from the baseline; no row when both are
-- equal. {baseline_rows} is an integer, {baseline_fingerprint} a text literal; {batch} is left
-- for GX: the view_fingerprint asset.
SELECT row_count, fingerprint
FROM {batch}
WHERE row_count <> {baseline_rows}
   OR fingerprint <> {baseline_fingerprint};
