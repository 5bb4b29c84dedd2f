-- Reporting views. Each is a deterministic function of the table data (no now(), no
-- current_date, no session TimeZone dependence) because backup baselines fingerprint their
-- rows and compare them after a restore. "As of" values use the fixed reference date
-- 2025-01-01 that generate.sql builds the demo hospital around.

-- One row per patient: activity and money.
CREATE VIEW v_patient_summary AS
SELECT p.id                                                     AS patient_id,
       p.mrn,
       p.first_name || ' ' || p.last_name                       AS full_name,
       p.date_of_birth,
       extract(year FROM age(timestamp '2025-01-01', p.date_of_birth::timestamp))::integer AS age_years,
       coalesce(ap.appointment_count, 0)                        AS appointment_count,
       coalesce(ad.admission_count, 0)                          AS admission_count,
       coalesce(bi.total_billed, 0)::numeric(14,2)              AS total_billed,
       coalesce(pa.total_paid, 0)::numeric(14,2)                AS total_paid,
       (coalesce(bi.total_billed, 0) - coalesce(pa.total_paid, 0))::numeric(14,2) AS outstanding_balance,
       CASE WHEN ap.last_visit_at IS NULL THEN ad.last_admitted_at
            WHEN ad.last_admitted_at IS NULL THEN ap.last_visit_at
            ELSE greatest(ap.last_visit_at, ad.last_admitted_at) END AS last_visit_at
FROM patients p
LEFT JOIN (SELECT patient_id, count(*) AS appointment_count,
                  max(scheduled_at) FILTER (WHERE status = 'completed') AS last_visit_at
           FROM appointments GROUP BY patient_id) ap ON ap.patient_id = p.id
LEFT JOIN (SELECT patient_id, count(*) AS admission_count, max(admitted_at) AS last_admitted_at
           FROM admissions GROUP BY patient_id) ad ON ad.patient_id = p.id
LEFT JOIN (SELECT patient_id, sum(total_amount) AS total_billed
           FROM billing WHERE status NOT IN ('draft', 'void') GROUP BY patient_id) bi ON bi.patient_id = p.id
LEFT JOIN (SELECT b.patient_id, sum(py.amount) AS total_paid
           FROM payments py JOIN billing b ON b.id = py.invoice_id GROUP BY b.patient_id) pa ON pa.patient_id = p.id;

COMMENT ON VIEW v_patient_summary IS 'One row per patient; age_years is the age on 2025-01-01; total_billed excludes draft and void invoices';

-- One row per department: staffing, beds and activity.
CREATE VIEW v_department_census AS
SELECT d.id                                         AS department_id,
       d.code,
       d.name,
       coalesce(s.doctors, 0)                       AS doctors,
       coalesce(s.nurses, 0)                        AS nurses,
       coalesce(s.other_staff, 0)                   AS other_staff,
       coalesce(w.wards, 0)                         AS wards,
       coalesce(w.beds, 0)                          AS beds,
       coalesce(a.current_inpatients, 0)            AS current_inpatients,
       coalesce(a.admissions_total, 0)              AS admissions_total,
       coalesce(ap.appointments_completed, 0)       AS appointments_completed,
       coalesce(ap.appointments_upcoming, 0)        AS appointments_upcoming
FROM departments d
LEFT JOIN (SELECT department_id,
                  count(*) FILTER (WHERE role = 'doctor' AND is_active) AS doctors,
                  count(*) FILTER (WHERE role = 'nurse' AND is_active)  AS nurses,
                  count(*) FILTER (WHERE role NOT IN ('doctor', 'nurse') AND is_active) AS other_staff
           FROM staff GROUP BY department_id) s ON s.department_id = d.id
LEFT JOIN (SELECT department_id, count(*) AS wards, sum(bed_count) AS beds
           FROM wards GROUP BY department_id) w ON w.department_id = d.id
LEFT JOIN (SELECT department_id, count(*) FILTER (WHERE status = 'admitted') AS current_inpatients,
                  count(*) AS admissions_total
           FROM admissions GROUP BY department_id) a ON a.department_id = d.id
LEFT JOIN (SELECT department_id, count(*) FILTER (WHERE status = 'completed') AS appointments_completed,
                  count(*) FILTER (WHERE status IN ('scheduled', 'checked_in')) AS appointments_upcoming
           FROM appointments GROUP BY department_id) ap ON ap.department_id = d.id;

COMMENT ON VIEW v_department_census IS 'One row per department; current_inpatients counts admissions with status admitted';

-- Invoices with money still owed, aged against 2025-01-01.
CREATE VIEW v_outstanding_invoices AS
SELECT b.id                                                  AS invoice_id,
       b.invoice_no,
       b.patient_id,
       p.mrn,
       p.first_name || ' ' || p.last_name                    AS patient_name,
       b.issued_at,
       b.due_date,
       b.status,
       b.total_amount,
       coalesce(py.amount_paid, 0)::numeric(12,2)            AS amount_paid,
       (b.total_amount - coalesce(py.amount_paid, 0))::numeric(12,2) AS balance,
       greatest(date '2025-01-01' - b.due_date, 0)           AS days_overdue
FROM billing b
JOIN patients p ON p.id = b.patient_id
LEFT JOIN (SELECT invoice_id, sum(amount) AS amount_paid FROM payments GROUP BY invoice_id) py ON py.invoice_id = b.id
WHERE b.status IN ('issued', 'partially_paid', 'overdue');

COMMENT ON VIEW v_outstanding_invoices IS 'Invoices issued, partially paid or overdue; days_overdue is counted on 2025-01-01';
