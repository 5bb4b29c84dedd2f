-- The runbook's second smoke test: can an application read patient summaries? No placeholders;
-- names unqualified, as an application would write them.
SELECT * FROM v_patient_summary LIMIT 5
