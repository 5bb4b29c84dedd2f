-- Hospital Management System schema (synthetic demo data, no real PHI).
-- Tables, types and primary keys only: secondary indexes, unique constraints and
-- foreign keys are added by constraints.sql AFTER the bulk load, views by views.sql.
-- Run as hms_admin (the loader does SET ROLE hms_admin) so hms_admin owns everything.
-- Every primary key is a bigint identity column named "id".

CREATE TYPE staff_role AS ENUM ('doctor', 'nurse', 'technician', 'admin', 'pharmacist');
CREATE TYPE appointment_status AS ENUM ('scheduled', 'checked_in', 'completed', 'cancelled', 'no_show');
CREATE TYPE admission_status AS ENUM ('admitted', 'discharged', 'transferred', 'deceased');
CREATE TYPE invoice_status AS ENUM ('draft', 'issued', 'partially_paid', 'paid', 'overdue', 'void');
CREATE TYPE payment_method AS ENUM ('cash', 'card', 'bank_transfer', 'insurance', 'cheque');

CREATE TABLE departments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            varchar(8)   NOT NULL,
    name            text         NOT NULL,
    floor           smallint     NOT NULL CHECK (floor BETWEEN -2 AND 20),
    phone_extension varchar(6)   NOT NULL,
    is_clinical     boolean      NOT NULL DEFAULT true,
    head_staff_id   bigint,                         -- FK to staff (circular): constraints.sql
    created_at      timestamptz  NOT NULL DEFAULT now()
);

CREATE TABLE wards (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    department_id bigint      NOT NULL,
    name          text        NOT NULL,
    ward_type     varchar(16) NOT NULL CHECK (ward_type IN ('general', 'icu', 'maternity', 'pediatric', 'isolation', 'surgical')),
    floor         smallint    NOT NULL,
    bed_count     smallint    NOT NULL CHECK (bed_count > 0),
    daily_rate    numeric(12,2) NOT NULL CHECK (daily_rate >= 0)
);

CREATE TABLE diagnoses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    icd10_code  varchar(8) NOT NULL,
    description text       NOT NULL,
    category    text       NOT NULL,
    is_chronic  boolean    NOT NULL DEFAULT false
);

CREATE TABLE staff (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    employee_no   varchar(12)  NOT NULL,
    first_name    text         NOT NULL,
    last_name     text         NOT NULL,
    role          staff_role   NOT NULL,
    department_id bigint       NOT NULL,
    specialty     text,                              -- doctors only
    license_no    varchar(20),                       -- licensed professions only
    email         varchar(120) NOT NULL,
    phone         varchar(24),
    hire_date     date         NOT NULL,
    salary        numeric(12,2) NOT NULL CHECK (salary > 0),
    is_active     boolean      NOT NULL DEFAULT true,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT staff_specialty_only_doctors CHECK (specialty IS NULL OR role = 'doctor')
);

CREATE TABLE patients (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mrn                     varchar(12)  NOT NULL,   -- medical record number
    first_name              text         NOT NULL,
    last_name               text         NOT NULL,
    date_of_birth           date         NOT NULL,
    sex                     char(1)      NOT NULL CHECK (sex IN ('F', 'M', 'X', 'U')),
    blood_type              varchar(3)   CHECK (blood_type IN ('O+', 'O-', 'A+', 'A-', 'B+', 'B-', 'AB+', 'AB-')),
    phone                   varchar(24),
    email                   varchar(120),
    address_line            text,
    city                    text,
    postal_code             varchar(12),
    country_code            char(2)      NOT NULL DEFAULT 'US',
    insurance_provider      text,
    insurance_policy_no     varchar(24),
    emergency_contact_name  text,
    emergency_contact_phone varchar(24),
    allergies               text[],
    registered_at           timestamptz  NOT NULL DEFAULT now(),
    is_active               boolean      NOT NULL DEFAULT true,
    notes                   text,
    CONSTRAINT patients_policy_needs_provider CHECK (insurance_policy_no IS NULL OR insurance_provider IS NOT NULL)
);

CREATE TABLE appointments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id       bigint             NOT NULL,
    doctor_id        bigint             NOT NULL,   -- staff row with role 'doctor'
    department_id    bigint             NOT NULL,
    scheduled_at     timestamptz        NOT NULL,
    duration_minutes smallint           NOT NULL DEFAULT 15 CHECK (duration_minutes BETWEEN 5 AND 240),
    status           appointment_status NOT NULL DEFAULT 'scheduled',
    reason           text               NOT NULL,
    diagnosis_id     bigint,
    notes            text,
    created_at       timestamptz        NOT NULL DEFAULT now()
);

CREATE TABLE admissions (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id            bigint           NOT NULL,
    attending_doctor_id   bigint           NOT NULL,
    department_id         bigint           NOT NULL,
    ward_id               bigint           NOT NULL,
    bed_label             varchar(8)       NOT NULL,
    admission_type        varchar(12)      NOT NULL CHECK (admission_type IN ('emergency', 'elective', 'transfer', 'maternity')),
    primary_diagnosis_id  bigint           NOT NULL,
    admitted_at           timestamptz      NOT NULL,
    discharged_at         timestamptz,
    status                admission_status NOT NULL DEFAULT 'admitted',
    discharge_disposition varchar(16)      CHECK (discharge_disposition IN ('home', 'home_care', 'rehab', 'other_facility', 'deceased')),
    notes                 text,
    CONSTRAINT admissions_discharge_after_admit CHECK (discharged_at IS NULL OR discharged_at > admitted_at),
    CONSTRAINT admissions_discharge_matches_status CHECK ((status = 'admitted') = (discharged_at IS NULL))
);

CREATE TABLE medications (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                  text          NOT NULL,
    generic_name          text          NOT NULL,
    form                  varchar(16)   NOT NULL CHECK (form IN ('tablet', 'capsule', 'syrup', 'injection', 'inhaler', 'cream', 'drops', 'patch')),
    strength              varchar(16)   NOT NULL,
    atc_code              varchar(8)    NOT NULL,
    unit_price            numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    requires_prescription boolean       NOT NULL DEFAULT true,
    is_controlled         boolean       NOT NULL DEFAULT false,
    stock_quantity        integer       NOT NULL DEFAULT 0 CHECK (stock_quantity >= 0)
);

CREATE TABLE prescriptions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id     bigint      NOT NULL,
    prescriber_id  bigint      NOT NULL,
    medication_id  bigint      NOT NULL,
    appointment_id bigint,
    admission_id   bigint,
    dosage         varchar(32) NOT NULL,
    frequency      varchar(32) NOT NULL,
    duration_days  smallint    NOT NULL CHECK (duration_days > 0),
    quantity       integer     NOT NULL CHECK (quantity > 0),
    refills        smallint    NOT NULL DEFAULT 0 CHECK (refills BETWEEN 0 AND 12),
    status         varchar(12) NOT NULL CHECK (status IN ('active', 'completed', 'cancelled')),
    prescribed_at  timestamptz NOT NULL,
    instructions   text,
    CONSTRAINT prescriptions_one_encounter CHECK (appointment_id IS NULL OR admission_id IS NULL)
);

-- Invoices. One per appointment (draft while booked, void if cancelled) and one per admission.
CREATE TABLE billing (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_no        varchar(20)    NOT NULL,
    patient_id        bigint         NOT NULL,
    appointment_id    bigint,
    admission_id      bigint,
    issued_at         timestamptz    NOT NULL,
    due_date          date           NOT NULL,
    currency          char(3)        NOT NULL DEFAULT 'USD',
    subtotal          numeric(12,2)  NOT NULL CHECK (subtotal >= 0),
    discount          numeric(12,2)  NOT NULL DEFAULT 0 CHECK (discount >= 0),
    tax               numeric(12,2)  NOT NULL DEFAULT 0 CHECK (tax >= 0),
    total_amount      numeric(12,2)  NOT NULL,
    insurance_covered numeric(12,2)  NOT NULL DEFAULT 0 CHECK (insurance_covered >= 0),
    status            invoice_status NOT NULL DEFAULT 'draft',
    notes             text,
    CONSTRAINT billing_total_adds_up CHECK (total_amount = subtotal - discount + tax),
    CONSTRAINT billing_total_not_negative CHECK (total_amount >= 0),
    CONSTRAINT billing_one_encounter CHECK (appointment_id IS NULL OR admission_id IS NULL)
);

CREATE TABLE payments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id     bigint         NOT NULL,
    paid_at        timestamptz    NOT NULL,
    amount         numeric(12,2)  NOT NULL CHECK (amount > 0),
    method         payment_method NOT NULL,
    reference      varchar(32),
    received_by_id bigint                          -- staff; NULL for online payments
);

CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    actor_staff_id bigint,                         -- NULL: system job
    action         varchar(8)  NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE', 'SELECT', 'LOGIN', 'LOGOUT', 'EXPORT', 'PRINT')),
    table_name     text,
    record_id      bigint,
    client_addr    inet,
    success        boolean     NOT NULL DEFAULT true,
    details        jsonb       NOT NULL DEFAULT '{}'::jsonb
);

COMMENT ON TABLE staff IS 'Hospital employees; doctors are staff rows with role = doctor';
COMMENT ON TABLE billing IS 'Invoices: one per appointment and one per admission';
COMMENT ON TABLE audit_log IS 'Access and change log (HIPAA audit trail); record_id refers to table_name';
COMMENT ON COLUMN patients.mrn IS 'Medical record number';
