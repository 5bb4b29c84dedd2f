-- Row count and fingerprint of a view's rows (a GX query asset, and the rows its check observes):
-- the digest that baseline.fingerprint_digest computes in Python, computed in SQL over the very
-- query baseline.fingerprint_relation runs. {method_prefix} is a text literal (the fingerprint
-- method and a colon); {measured} is relation_fingerprint.sql filled in for the view.
SELECT row_count,
       encode(sha256(convert_to({method_prefix} || row_count || ':' || hash_sum_high || ':' || hash_sum_low, 'UTF8')),
              'hex') AS fingerprint
FROM ({measured}
) AS measured;
