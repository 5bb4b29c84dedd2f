-- Unique constraints, secondary indexes and foreign keys, added AFTER generate.sql has
-- bulk-loaded the tables (building an index once is much faster than maintaining it per row).
-- Every foreign key is created VALIDATED. departments.head_staff_id <-> staff.department_id
-- is a deliberate circular reference (pg_restore must order it correctly).

-- ---------------------------------------------------------------- unique keys
ALTER TABLE departments ADD CONSTRAINT departments_code_key UNIQUE (code);
ALTER TABLE wards       ADD CONSTRAINT wards_department_name_key UNIQUE (department_id, name);
ALTER TABLE diagnoses   ADD CONSTRAINT diagnoses_icd10_code_key UNIQUE (icd10_code);
ALTER TABLE medications ADD CONSTRAINT medications_name_strength_key UNIQUE (name, strength);
ALTER TABLE staff       ADD CONSTRAINT staff_employee_no_key UNIQUE (employee_no),
                        ADD CONSTRAINT staff_email_key UNIQUE (email);
ALTER TABLE patients    ADD CONSTRAINT patients_mrn_key UNIQUE (mrn);
ALTER TABLE billing     ADD CONSTRAINT billing_invoice_no_key UNIQUE (invoice_no),
                        ADD CONSTRAINT billing_appointment_id_key UNIQUE (appointment_id);
-- partial: most invoices are for appointments, their NULL admission_id need no index entry
CREATE UNIQUE INDEX billing_admission_id_key ON billing (admission_id) WHERE admission_id IS NOT NULL;

-- ---------------------------------------------------------------- secondary indexes
CREATE INDEX staff_department_id_role_idx        ON staff (department_id, role);
CREATE INDEX patients_last_name_first_name_idx   ON patients (last_name, first_name);
CREATE INDEX patients_date_of_birth_idx          ON patients (date_of_birth);
CREATE INDEX appointments_patient_id_idx         ON appointments (patient_id);
CREATE INDEX appointments_doctor_id_scheduled_at_idx ON appointments (doctor_id, scheduled_at);
CREATE INDEX appointments_upcoming_idx           ON appointments (scheduled_at) WHERE status IN ('scheduled', 'checked_in');
CREATE INDEX admissions_patient_id_idx           ON admissions (patient_id);
CREATE INDEX admissions_current_ward_idx         ON admissions (ward_id) WHERE status = 'admitted';
CREATE INDEX prescriptions_patient_id_idx        ON prescriptions (patient_id);
CREATE INDEX prescriptions_medication_id_idx     ON prescriptions (medication_id);
CREATE INDEX prescriptions_appointment_id_idx    ON prescriptions (appointment_id) WHERE appointment_id IS NOT NULL;
CREATE INDEX prescriptions_admission_id_idx      ON prescriptions (admission_id) WHERE admission_id IS NOT NULL;
CREATE INDEX billing_patient_id_idx              ON billing (patient_id);
CREATE INDEX billing_open_due_date_idx           ON billing (due_date) WHERE status IN ('issued', 'partially_paid', 'overdue');
CREATE INDEX payments_invoice_id_idx             ON payments (invoice_id);
CREATE INDEX audit_log_occurred_at_brin          ON audit_log USING brin (occurred_at);
CREATE INDEX audit_log_table_record_idx          ON audit_log (table_name, record_id) WHERE table_name IS NOT NULL;

-- ---------------------------------------------------------------- foreign keys
ALTER TABLE departments   ADD CONSTRAINT departments_head_staff_id_fkey FOREIGN KEY (head_staff_id) REFERENCES staff (id) ON DELETE SET NULL;
ALTER TABLE wards         ADD CONSTRAINT wards_department_id_fkey FOREIGN KEY (department_id) REFERENCES departments (id);
ALTER TABLE staff         ADD CONSTRAINT staff_department_id_fkey FOREIGN KEY (department_id) REFERENCES departments (id);
ALTER TABLE appointments  ADD CONSTRAINT appointments_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients (id),
                          ADD CONSTRAINT appointments_doctor_id_fkey FOREIGN KEY (doctor_id) REFERENCES staff (id),
                          ADD CONSTRAINT appointments_department_id_fkey FOREIGN KEY (department_id) REFERENCES departments (id),
                          ADD CONSTRAINT appointments_diagnosis_id_fkey FOREIGN KEY (diagnosis_id) REFERENCES diagnoses (id);
ALTER TABLE admissions    ADD CONSTRAINT admissions_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients (id),
                          ADD CONSTRAINT admissions_attending_doctor_id_fkey FOREIGN KEY (attending_doctor_id) REFERENCES staff (id),
                          ADD CONSTRAINT admissions_department_id_fkey FOREIGN KEY (department_id) REFERENCES departments (id),
                          ADD CONSTRAINT admissions_ward_id_fkey FOREIGN KEY (ward_id) REFERENCES wards (id),
                          ADD CONSTRAINT admissions_primary_diagnosis_id_fkey FOREIGN KEY (primary_diagnosis_id) REFERENCES diagnoses (id);
ALTER TABLE prescriptions ADD CONSTRAINT prescriptions_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients (id),
                          ADD CONSTRAINT prescriptions_prescriber_id_fkey FOREIGN KEY (prescriber_id) REFERENCES staff (id),
                          ADD CONSTRAINT prescriptions_medication_id_fkey FOREIGN KEY (medication_id) REFERENCES medications (id),
                          ADD CONSTRAINT prescriptions_appointment_id_fkey FOREIGN KEY (appointment_id) REFERENCES appointments (id),
                          ADD CONSTRAINT prescriptions_admission_id_fkey FOREIGN KEY (admission_id) REFERENCES admissions (id);
ALTER TABLE billing       ADD CONSTRAINT billing_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients (id),
                          ADD CONSTRAINT billing_appointment_id_fkey FOREIGN KEY (appointment_id) REFERENCES appointments (id),
                          ADD CONSTRAINT billing_admission_id_fkey FOREIGN KEY (admission_id) REFERENCES admissions (id);
ALTER TABLE payments      ADD CONSTRAINT payments_invoice_id_fkey FOREIGN KEY (invoice_id) REFERENCES billing (id),
                          ADD CONSTRAINT payments_received_by_id_fkey FOREIGN KEY (received_by_id) REFERENCES staff (id);
ALTER TABLE audit_log     ADD CONSTRAINT audit_log_actor_staff_id_fkey FOREIGN KEY (actor_staff_id) REFERENCES staff (id);
