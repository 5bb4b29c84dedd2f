-- The runbook's first smoke test: can an application count the patients? No placeholders;
-- names unqualified, as an application would write them.
SELECT COUNT(*) FROM patients
