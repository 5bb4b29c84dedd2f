-- Deterministic synthetic data for the HMS schema (no real PHI).
--
-- Scale: SET hms.scale_mb = '<N>' before running (default 50). Row counts grow linearly so
-- that pg_database_size() after constraints.sql + views.sql + ANALYZE is about N MB.
-- Determinism: the same scale gives the same rows on every run and machine. No random(),
-- no now(), no session TimeZone dependence: every value is a function of the row number
-- through hashint8extended() (pure integer arithmetic, endian independent), timestamps are
-- to_timestamp(<2015-01-01 UTC epoch> + seconds) and dates are date + integer.
-- The data describes a hospital "as of" 2025-01-01 00:00 UTC (views use the same date):
-- encounters run from 2015-01-01, plus ~2 months of booked future appointments.
-- Set-based: one INSERT ... SELECT per table, explicit ids (OVERRIDING SYSTEM VALUE),
-- identity sequences advanced at the end. Temporary helpers live in pg_temp and are dropped.

-- JIT compiling these wide expressions costs more than it saves.
SELECT set_config('jit', 'off', true);

-- ---------------------------------------------------------------- helpers (inlined SQL)
-- Keep them inlinable: a parameter used more than once must receive a cheap argument
-- (a column or constant arithmetic), otherwise PostgreSQL calls the SQL function per row.
-- h(x, salt): well-mixed non-negative bigint
CREATE FUNCTION pg_temp.h(x bigint, salt bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT hashint8extended(x, salt) & 9223372036854775807 $$;
-- seconds since 2015-01-01 00:00:00 UTC -> timestamptz
CREATE FUNCTION pg_temp.ts(secs bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT to_timestamp(1420070400 + secs) $$;
CREATE FUNCTION pg_temp.pick(a text[], x bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT a[(1 + x % cardinality(a))::int] $$;
-- day number (0 = 2015-01-01) for a count of seconds that may be negative
CREATE FUNCTION pg_temp.day_of(secs bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT ((secs + 864000000) / 86400 - 10000)::int $$;

-- Names come in cultural groups so first and last names match; the *_ascii arrays are the
-- transliterations (same length, same order) used to build e-mail addresses.
-- calendar year of a day number (>= -730), integer arithmetic only (exact up to 2099)
CREATE FUNCTION pg_temp.year_of(day integer) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT 2013 + 4 * ((day + 730) / 1461) + least(((day + 730) % 1461) / 365, 3) $$;

CREATE FUNCTION pg_temp.name_group(seed bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT CASE WHEN pg_temp.h(seed, 7) % 100 < 64 THEN 0
                   WHEN pg_temp.h(seed, 7) % 100 < 78 THEN 1
                   WHEN pg_temp.h(seed, 7) % 100 < 92 THEN 2
                   ELSE 3 END $$;

CREATE FUNCTION pg_temp.first_name(seed bigint, female boolean, ascii boolean) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE pg_temp.name_group(seed) * 4 + female::int * 2 + ascii::int
  WHEN 0 THEN pg_temp.pick(ARRAY['James','Robert','John','Michael','David','William','Richard','Joseph','Thomas','Charles','Christopher','Daniel','Matthew','Anthony','Mark','Donald','Steven','Paul','Andrew','Joshua','Kenneth','Kevin','Brian','George','Timothy','Ronald','Edward','Jason','Jeffrey','Ryan','Noah','Liam'], pg_temp.h(seed, 8))
  WHEN 1 THEN pg_temp.pick(ARRAY['james','robert','john','michael','david','william','richard','joseph','thomas','charles','christopher','daniel','matthew','anthony','mark','donald','steven','paul','andrew','joshua','kenneth','kevin','brian','george','timothy','ronald','edward','jason','jeffrey','ryan','noah','liam'], pg_temp.h(seed, 8))
  WHEN 2 THEN pg_temp.pick(ARRAY['Mary','Patricia','Jennifer','Linda','Elizabeth','Barbara','Susan','Jessica','Sarah','Karen','Nancy','Lisa','Betty','Margaret','Sandra','Ashley','Emily','Donna','Michelle','Carol','Amanda','Melissa','Deborah','Stephanie','Rebecca','Laura','Sharon','Chloé','Zoë','Renée','Olivia','Emma'], pg_temp.h(seed, 8))
  WHEN 3 THEN pg_temp.pick(ARRAY['mary','patricia','jennifer','linda','elizabeth','barbara','susan','jessica','sarah','karen','nancy','lisa','betty','margaret','sandra','ashley','emily','donna','michelle','carol','amanda','melissa','deborah','stephanie','rebecca','laura','sharon','chloe','zoe','renee','olivia','emma'], pg_temp.h(seed, 8))
  WHEN 4 THEN pg_temp.pick(ARRAY['José','Juan','Luis','Carlos','Jorge','Miguel','Alejandro','Andrés','Javier','Diego','Ramón','Sebastián','Íñigo','Álvaro'], pg_temp.h(seed, 8))
  WHEN 5 THEN pg_temp.pick(ARRAY['jose','juan','luis','carlos','jorge','miguel','alejandro','andres','javier','diego','ramon','sebastian','inigo','alvaro'], pg_temp.h(seed, 8))
  WHEN 6 THEN pg_temp.pick(ARRAY['María','Lucía','Sofía','Ana','Carmen','Isabel','Valentina','Camila','Elena','Paula','Ximena','Guadalupe','Inés','Begoña'], pg_temp.h(seed, 8))
  WHEN 7 THEN pg_temp.pick(ARRAY['maria','lucia','sofia','ana','carmen','isabel','valentina','camila','elena','paula','ximena','guadalupe','ines','begona'], pg_temp.h(seed, 8))
  WHEN 8 THEN pg_temp.pick(ARRAY['François','Jürgen','Björn','Søren','Łukasz','Jiří','Mathéo','Stéphane','Günther','Håkon','Mehmet','Γιώργος','Piotr','Klaus','Olivier'], pg_temp.h(seed, 8))
  WHEN 9 THEN pg_temp.pick(ARRAY['francois','jurgen','bjorn','soren','lukasz','jiri','matheo','stephane','gunther','hakon','mehmet','giorgos','piotr','klaus','olivier'], pg_temp.h(seed, 8))
  WHEN 10 THEN pg_temp.pick(ARRAY['Sophie','Léa','Élodie','Hélène','Anneliese','Jördis','Åsa','Małgorzata','Zsófia','Ayşe','Dorothée','Agnieszka','Ελένη','Katarzyna','Ingrid'], pg_temp.h(seed, 8))
  WHEN 11 THEN pg_temp.pick(ARRAY['sophie','lea','elodie','helene','anneliese','jordis','asa','malgorzata','zsofia','ayse','dorothee','agnieszka','eleni','katarzyna','ingrid'], pg_temp.h(seed, 8))
  WHEN 12 THEN pg_temp.pick(ARRAY['伟','强','磊','军','洋','勇','杰','涛','Wei','Hao'], pg_temp.h(seed, 8))
  WHEN 13 THEN pg_temp.pick(ARRAY['wei','qiang','lei','jun','yang','yong','jie','tao','wei','hao'], pg_temp.h(seed, 8))
  WHEN 14 THEN pg_temp.pick(ARRAY['芳','秀英','娜','敏','静','丽','婷','雪','Mei','Xiaoling'], pg_temp.h(seed, 8))
  ELSE         pg_temp.pick(ARRAY['fang','xiuying','na','min','jing','li','ting','xue','mei','xiaoling'], pg_temp.h(seed, 8))
END $$;

CREATE FUNCTION pg_temp.last_name(seed bigint, ascii boolean) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE pg_temp.name_group(seed) * 2 + ascii::int
  WHEN 0 THEN pg_temp.pick(ARRAY['Smith','Johnson','Williams','Brown','Jones','Miller','Davis','Wilson','Anderson','Taylor','Thomas','Moore','Jackson','Martin','Lee','Thompson','White','Harris','Clark','Lewis','Robinson','Walker','Young','Allen','King','Wright','Scott','Hill','Green','Adams','Baker','Nelson','Carter','Mitchell','Roberts','Turner','Phillips','Campbell','Parker','Evans','O''Brien','Nguyen','Patel','Kim'], pg_temp.h(seed, 9))
  WHEN 1 THEN pg_temp.pick(ARRAY['smith','johnson','williams','brown','jones','miller','davis','wilson','anderson','taylor','thomas','moore','jackson','martin','lee','thompson','white','harris','clark','lewis','robinson','walker','young','allen','king','wright','scott','hill','green','adams','baker','nelson','carter','mitchell','roberts','turner','phillips','campbell','parker','evans','obrien','nguyen','patel','kim'], pg_temp.h(seed, 9))
  WHEN 2 THEN pg_temp.pick(ARRAY['García','Rodríguez','Martínez','Hernández','López','González','Pérez','Sánchez','Ramírez','Torres','Flores','Rivera','Gómez','Díaz','Muñoz','Peña','Ibáñez','Núñez','Ortiz','Castillo'], pg_temp.h(seed, 9))
  WHEN 3 THEN pg_temp.pick(ARRAY['garcia','rodriguez','martinez','hernandez','lopez','gonzalez','perez','sanchez','ramirez','torres','flores','rivera','gomez','diaz','munoz','pena','ibanez','nunez','ortiz','castillo'], pg_temp.h(seed, 9))
  WHEN 4 THEN pg_temp.pick(ARRAY['Müller','Schröder','Lefèvre','Dubois','Fässler','Østergaard','Lindqvist','Kowalski','Wiśniewski','Dvořák','Novák','Özdemir','Yılmaz','Παπαδόπουλος','Weiß','Grünewald','Jørgensen','Bäcker','Rousseau','Nieminen'], pg_temp.h(seed, 9))
  WHEN 5 THEN pg_temp.pick(ARRAY['muller','schroder','lefevre','dubois','fassler','ostergaard','lindqvist','kowalski','wisniewski','dvorak','novak','ozdemir','yilmaz','papadopoulos','weiss','grunewald','jorgensen','backer','rousseau','nieminen'], pg_temp.h(seed, 9))
  WHEN 6 THEN pg_temp.pick(ARRAY['李','王','张','刘','陈','杨','黄','赵','Li','Wang','Zhang','Chen'], pg_temp.h(seed, 9))
  ELSE        pg_temp.pick(ARRAY['li','wang','zhang','liu','chen','yang','huang','zhao','li','wang','zhang','chen'], pg_temp.h(seed, 9))
END $$;

CREATE FUNCTION pg_temp.phone(seed bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT '+1-' || (201 + pg_temp.h(seed, 31) % 789)::text || '-555-'
              || lpad((pg_temp.h(seed, 32) % 10000)::text, 4, '0') $$;

-- Staff layout: within every block of 10 ids, 3 doctors, 4 nurses, a technician, an admin and a
-- pharmacist. k-th doctor (k from 0) -> staff id; staff id -> department.
CREATE FUNCTION pg_temp.doctor(k bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (k / 3) * 10 + k % 3 + 1 $$;
CREATE FUNCTION pg_temp.doctor_dept(k bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1 + (k / 3) % 14 $$;
CREATE FUNCTION pg_temp.staff_dept(i bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT CASE (i - 1) % 10 WHEN 7 THEN 17 WHEN 8 THEN 15 WHEN 9 THEN 16 ELSE 1 + ((i - 1) / 10) % 14 END $$;

-- Patients: the first 20% are legacy records (registered before 2015), the rest register evenly
-- over 2015-2024. patient_upto(day) = highest patient id already registered before that day.
CREATE FUNCTION pg_temp.patient_upto(day bigint, p bigint, p0 bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT least(p, p0 + day * (p - p0) / 3653) $$;
CREATE FUNCTION pg_temp.patient_sex(i bigint) RETURNS char
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT substr('FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMXU',
                     (1 + pg_temp.h(i, 20) % 100)::int, 1)::char $$;
CREATE FUNCTION pg_temp.patient_insured(i bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT pg_temp.h(i, 21) % 100 < 88 $$;

-- Appointments: evenly spread over 3712 days (2015-01-01 .. 2025-02-28), 08:00-17:45 UTC slots.
CREATE FUNCTION pg_temp.appt_day(a bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (a - 1) * 3712 / n $$;
CREATE FUNCTION pg_temp.appt_secs(a bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT pg_temp.appt_day(a, n) * 86400 + 28800 + (pg_temp.h(a, 103) % 40) * 900 $$;
CREATE FUNCTION pg_temp.appt_patient(a bigint, n bigint, p bigint, p0 bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT 1 + pg_temp.h(a, 101) % pg_temp.patient_upto(pg_temp.appt_day(a, n), p, p0) $$;
CREATE FUNCTION pg_temp.appt_doctor(a bigint, d bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT pg_temp.doctor(pg_temp.h(a, 102) % d) $$;
CREATE FUNCTION pg_temp.appt_dept(a bigint, d bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT pg_temp.doctor_dept(pg_temp.h(a, 102) % d) $$;
CREATE FUNCTION pg_temp.appt_status(a bigint, n bigint) RETURNS appointment_status
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN pg_temp.appt_day(a, n) >= 3653 THEN 'scheduled'::appointment_status
            WHEN pg_temp.h(a, 104) % 100 < 82 THEN 'completed'
            WHEN pg_temp.h(a, 104) % 100 < 92 THEN 'cancelled'
            ELSE 'no_show' END $$;
-- booking time: 1-30 days before the slot; future slots were all booked in December 2024
CREATE FUNCTION pg_temp.appt_booked_secs(a bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN pg_temp.appt_day(a, n) < 3653
            THEN pg_temp.appt_secs(a, n) - (1 + pg_temp.h(a, 105) % 30) * 86400 - pg_temp.h(a, 106) % 28800
            ELSE 312940800 + pg_temp.h(a, 105) % 2592000 END $$;

-- Admissions: evenly spread over 2015-2024, length of stay 1-15 days (skewed short).
CREATE FUNCTION pg_temp.adm_day(m bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (m - 1) * 3653 / n $$;
CREATE FUNCTION pg_temp.adm_secs(m bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT pg_temp.adm_day(m, n) * 86400 + (pg_temp.h(m, 201) % 1440) * 60 $$;
CREATE FUNCTION pg_temp.adm_patient(m bigint, n bigint, p bigint, p0 bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT 1 + pg_temp.h(m, 202) % pg_temp.patient_upto(pg_temp.adm_day(m, n), p, p0) $$;
CREATE FUNCTION pg_temp.adm_doctor(m bigint, d bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT pg_temp.doctor(pg_temp.h(m, 203) % d) $$;
CREATE FUNCTION pg_temp.adm_dept(m bigint, d bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT pg_temp.doctor_dept(pg_temp.h(m, 203) % d) $$;
CREATE FUNCTION pg_temp.adm_los_secs(m bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT 86400 * (1 + (pg_temp.h(m, 204) % 100) * (pg_temp.h(m, 204) % 100) / 700) + (pg_temp.h(m, 205) % 1440) * 60 $$;
-- discharge time in seconds, NULL while still admitted on 2025-01-01
CREATE FUNCTION pg_temp.adm_out_secs(m bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT nullif(least(pg_temp.adm_secs(m, n) + pg_temp.adm_los_secs(m), 315619200), 315619200) $$;
CREATE FUNCTION pg_temp.ward_rate(w bigint) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 900.00 + ((w * 7) % 6) * 150.00 $$;
CREATE FUNCTION pg_temp.consult_fee(dept bigint) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT (ARRAY[240.00,260.00,310.00,150.00,210.00,380.00,290.00,170.00,200.00,160.00,220.00,230.00,210.00,200.00,90.00,60.00,140.00])[dept::int] $$;

-- ---------------------------------------------------------------- reference data (fixed size)
INSERT INTO departments (id, code, name, floor, phone_extension, is_clinical, head_staff_id, created_at) OVERRIDING SYSTEM VALUE
SELECT d.id, d.code, d.name, d.floor, (4000 + d.id * 10)::text, d.id <> 15 AND d.id <> 16,
       CASE d.id WHEN 15 THEN 9 WHEN 16 THEN 10 WHEN 17 THEN 8 ELSE (d.id - 1) * 10 + 1 END,
       timestamptz '2014-06-01 08:00:00+00'
FROM (VALUES (1, 'CARD', 'Cardiology', 3), (2, 'NEUR', 'Neurology', 4), (3, 'ONC', 'Oncology', 5),
             (4, 'PED', 'Pediatrics', 2), (5, 'ORTH', 'Orthopedics', 3), (6, 'EMER', 'Emergency Medicine', 0),
             (7, 'GSUR', 'General Surgery', 1), (8, 'IMED', 'Internal Medicine', 4), (9, 'OBGYN', 'Obstetrics & Gynecology', 2),
             (10, 'DERM', 'Dermatology', 6), (11, 'PSY', 'Psychiatry', 7), (12, 'NEPH', 'Nephrology', 5),
             (13, 'GAST', 'Gastroenterology', 6), (14, 'PULM', 'Pulmonology', 7), (15, 'ADMIN', 'Administration', 8),
             (16, 'PHARM', 'Pharmacy', 0), (17, 'LAB', 'Laboratory & Radiology', -1)) AS d(id, code, name, floor);

INSERT INTO wards (id, department_id, name, ward_type, floor, bed_count, daily_rate) OVERRIDING SYSTEM VALUE
SELECT (dep.id - 1) * 2 + w, dep.id, dep.name || ' Ward ' || chr(64 + w),
       CASE WHEN dep.id = 4 THEN 'pediatric' WHEN dep.id = 9 THEN 'maternity'
            WHEN w = 2 AND dep.id IN (1, 6, 14) THEN 'icu' WHEN dep.id IN (5, 7) THEN 'surgical'
            WHEN w = 2 AND dep.id = 8 THEN 'isolation' ELSE 'general' END,
       dep.floor, 12 + (((dep.id - 1) * 2 + w) * 7) % 13, pg_temp.ward_rate((dep.id - 1) * 2 + w)
FROM departments dep CROSS JOIN generate_series(1, 2) AS w
WHERE dep.id <= 14;

INSERT INTO diagnoses (id, icd10_code, description, category, is_chronic) OVERRIDING SYSTEM VALUE
SELECT row_number() OVER (ORDER BY v.code), v.code, v.descr, v.cat, v.chronic
FROM (VALUES ('I10', 'Essential (primary) hypertension', 'Circulatory', true),
             ('I21.9', 'Acute myocardial infarction, unspecified', 'Circulatory', false),
             ('I48.91', 'Atrial fibrillation, unspecified', 'Circulatory', true),
             ('I50.9', 'Heart failure, unspecified', 'Circulatory', true),
             ('I63.9', 'Cerebral infarction, unspecified', 'Circulatory', false),
             ('E11.9', 'Type 2 diabetes mellitus without complications', 'Endocrine', true),
             ('E78.5', 'Hyperlipidemia, unspecified', 'Endocrine', true),
             ('E03.9', 'Hypothyroidism, unspecified', 'Endocrine', true),
             ('J18.9', 'Pneumonia, unspecified organism', 'Respiratory', false),
             ('J44.1', 'Chronic obstructive pulmonary disease with acute exacerbation', 'Respiratory', true),
             ('J45.909', 'Unspecified asthma, uncomplicated', 'Respiratory', true),
             ('J06.9', 'Acute upper respiratory infection, unspecified', 'Respiratory', false),
             ('U07.1', 'COVID-19', 'Respiratory', false),
             ('K21.9', 'Gastro-esophageal reflux disease without esophagitis', 'Digestive', true),
             ('K35.80', 'Unspecified acute appendicitis', 'Digestive', false),
             ('K80.20', 'Calculus of gallbladder without obstruction', 'Digestive', false),
             ('N18.3', 'Chronic kidney disease, stage 3', 'Genitourinary', true),
             ('N39.0', 'Urinary tract infection, site not specified', 'Genitourinary', false),
             ('M54.5', 'Low back pain', 'Musculoskeletal', false),
             ('M17.11', 'Unilateral primary osteoarthritis, right knee', 'Musculoskeletal', true),
             ('S72.001A', 'Fracture of unspecified part of neck of right femur', 'Injury', false),
             ('S52.501A', 'Unspecified fracture of the lower end of right radius', 'Injury', false),
             ('S06.0X0A', 'Concussion without loss of consciousness', 'Injury', false),
             ('F32.9', 'Major depressive disorder, single episode, unspecified', 'Mental', false),
             ('F41.1', 'Generalized anxiety disorder', 'Mental', true),
             ('G43.909', 'Migraine, unspecified', 'Nervous', true),
             ('G40.909', 'Epilepsy, unspecified', 'Nervous', true),
             ('C50.911', 'Malignant neoplasm of unspecified site of right female breast', 'Neoplasm', true),
             ('C34.90', 'Malignant neoplasm of unspecified part of bronchus or lung', 'Neoplasm', true),
             ('C18.9', 'Malignant neoplasm of colon, unspecified', 'Neoplasm', true),
             ('O80', 'Encounter for full-term uncomplicated delivery', 'Pregnancy', false),
             ('O24.419', 'Gestational diabetes mellitus in pregnancy', 'Pregnancy', false),
             ('L40.0', 'Psoriasis vulgaris', 'Skin', true),
             ('L20.9', 'Atopic dermatitis, unspecified', 'Skin', true),
             ('A09', 'Infectious gastroenteritis and colitis, unspecified', 'Infectious', false),
             ('R07.9', 'Chest pain, unspecified', 'Symptoms', false),
             ('R51.9', 'Headache, unspecified', 'Symptoms', false),
             ('R50.9', 'Fever, unspecified', 'Symptoms', false),
             ('Z00.00', 'General adult medical examination without abnormal findings', 'Factors', false),
             ('Z23', 'Encounter for immunization', 'Factors', false)) AS v(code, descr, cat, chronic);

INSERT INTO medications (id, name, generic_name, form, strength, atc_code, unit_price, requires_prescription, is_controlled, stock_quantity) OVERRIDING SYSTEM VALUE
SELECT (v.n - 1) * 3 + s, v.brand, v.generic, v.form, split_part(v.strengths, '|', s), v.atc,
       round(v.price * (1 + (s - 1) * 0.35), 2), v.rx, v.controlled, (v.n * 37 + s * 101) % 900 + 20
FROM (VALUES (1, 'Lipitor', 'atorvastatin', 'tablet', '10 mg|20 mg|40 mg', 'C10AA05', 0.45, true, false),
             (2, 'Glucophage', 'metformin', 'tablet', '500 mg|850 mg|1000 mg', 'A10BA02', 0.12, true, false),
             (3, 'Zestril', 'lisinopril', 'tablet', '5 mg|10 mg|20 mg', 'C09AA03', 0.18, true, false),
             (4, 'Norvasc', 'amlodipine', 'tablet', '2.5 mg|5 mg|10 mg', 'C08CA01', 0.20, true, false),
             (5, 'Prilosec', 'omeprazole', 'capsule', '10 mg|20 mg|40 mg', 'A02BC01', 0.30, false, false),
             (6, 'Synthroid', 'levothyroxine', 'tablet', '25 mcg|50 mcg|100 mcg', 'H03AA01', 0.25, true, false),
             (7, 'Amoxil', 'amoxicillin', 'capsule', '250 mg|500 mg|875 mg', 'J01CA04', 0.35, true, false),
             (8, 'Zithromax', 'azithromycin', 'tablet', '250 mg|500 mg|600 mg', 'J01FA10', 1.10, true, false),
             (9, 'Cipro', 'ciprofloxacin', 'tablet', '250 mg|500 mg|750 mg', 'J01MA02', 0.80, true, false),
             (10, 'Augmentin', 'amoxicillin/clavulanate', 'tablet', '375 mg|625 mg|1 g', 'J01CR02', 1.40, true, false),
             (11, 'Ventolin', 'salbutamol', 'inhaler', '100 mcg|200 mcg|400 mcg', 'R03AC02', 18.50, true, false),
             (12, 'Flovent', 'fluticasone', 'inhaler', '44 mcg|110 mcg|220 mcg', 'R03BA05', 42.00, true, false),
             (13, 'Advil', 'ibuprofen', 'tablet', '200 mg|400 mg|600 mg', 'M01AE01', 0.08, false, false),
             (14, 'Tylenol', 'paracetamol', 'tablet', '325 mg|500 mg|650 mg', 'N02BE01', 0.06, false, false),
             (15, 'OxyContin', 'oxycodone', 'tablet', '5 mg|10 mg|20 mg', 'N02AA05', 2.30, true, true),
             (16, 'Ultram', 'tramadol', 'tablet', '50 mg|100 mg|200 mg', 'N02AX02', 0.90, true, true),
             (17, 'Duramorph', 'morphine', 'injection', '2 mg/ml|5 mg/ml|10 mg/ml', 'N02AA01', 6.80, true, true),
             (18, 'Xanax', 'alprazolam', 'tablet', '0.25 mg|0.5 mg|1 mg', 'N05BA12', 0.70, true, true),
             (19, 'Zoloft', 'sertraline', 'tablet', '25 mg|50 mg|100 mg', 'N06AB06', 0.40, true, false),
             (20, 'Lexapro', 'escitalopram', 'tablet', '5 mg|10 mg|20 mg', 'N06AB10', 0.55, true, false),
             (21, 'Keppra', 'levetiracetam', 'tablet', '250 mg|500 mg|750 mg', 'N03AX14', 1.20, true, false),
             (22, 'Lasix', 'furosemide', 'tablet', '20 mg|40 mg|80 mg', 'C03CA01', 0.15, true, false),
             (23, 'Eliquis', 'apixaban', 'tablet', '2.5 mg|5 mg|10 mg', 'B01AF02', 3.90, true, false),
             (24, 'Coumadin', 'warfarin', 'tablet', '1 mg|2 mg|5 mg', 'B01AA03', 0.22, true, false),
             (25, 'Plavix', 'clopidogrel', 'tablet', '75 mg|150 mg|300 mg', 'B01AC04', 0.65, true, false),
             (26, 'Lovenox', 'enoxaparin', 'injection', '40 mg|60 mg|80 mg', 'B01AB05', 14.00, true, false),
             (27, 'Lantus', 'insulin glargine', 'injection', '100 U/ml|200 U/ml|300 U/ml', 'A10AE04', 28.00, true, false),
             (28, 'Humalog', 'insulin lispro', 'injection', '100 U/ml|200 U/ml|300 U/ml', 'A10AB04', 26.00, true, false),
             (29, 'Deltasone', 'prednisone', 'tablet', '5 mg|10 mg|20 mg', 'H02AB07', 0.10, true, false),
             (30, 'Medrol', 'methylprednisolone', 'tablet', '4 mg|8 mg|16 mg', 'H02AB04', 0.60, true, false),
             (31, 'Zofran', 'ondansetron', 'tablet', '4 mg|8 mg|16 mg', 'A04AA01', 1.30, true, false),
             (32, 'Benadryl', 'diphenhydramine', 'syrup', '12.5 mg/5 ml|25 mg/5 ml|50 mg/5 ml', 'R06AA02', 4.50, false, false),
             (33, 'Claritin', 'loratadine', 'tablet', '5 mg|10 mg|20 mg', 'R06AX13', 0.20, false, false),
             (34, 'Hydrocortisone', 'hydrocortisone', 'cream', '0.5 %|1 %|2.5 %', 'D07AA02', 6.00, false, false),
             (35, 'Voltaren', 'diclofenac', 'cream', '1 %|2 %|3 %', 'M02AA15', 9.50, false, false),
             (36, 'Xalatan', 'latanoprost', 'drops', '0.005 %|0.01 %|0.02 %', 'S01EE01', 22.00, true, false),
             (37, 'Duragesic', 'fentanyl', 'patch', '12 mcg/h|25 mcg/h|50 mcg/h', 'N02AB03', 11.00, true, true),
             (38, 'Nicoderm', 'nicotine', 'patch', '7 mg|14 mg|21 mg', 'N07BA01', 2.50, false, false),
             (39, 'Rocephin', 'ceftriaxone', 'injection', '250 mg|500 mg|1 g', 'J01DD04', 8.00, true, false),
             (40, 'Vancocin', 'vancomycin', 'injection', '500 mg|750 mg|1 g', 'J01XA01', 12.00, true, false))
     AS v(n, brand, generic, form, strengths, atc, price, rx, controlled)
CROSS JOIN generate_series(1, 3) AS s;

-- ---------------------------------------------------------------- row counts from the scale
-- 9.3 MB is an empty database with this schema and the reference tables; every MB above it
-- holds 190 patients with their encounters (~5.3 KB of rows and indexes per patient).
-- Measured on PostgreSQL 15: pg_database_size() within 1% of hms.scale_mb from 20 MB to 2 GB.
-- Re-measure both constants after changing columns, indexes or per-patient ratios.
CREATE TEMP TABLE hms_gen AS
SELECT x.p AS n_patients,
       greatest(1, x.p / 5) AS n_legacy,
       x.s AS n_staff,
       x.s * 3 / 10 AS n_doctors,
       x.p * 42 / 10 AS n_appointments,
       greatest(1, x.p * 45 / 100) AS n_admissions,
       x.p * 3 AS n_prescriptions,
       x.p * 4 AS n_audit,
       0::bigint AS n_payments,
       (SELECT count(*) FROM diagnoses) AS n_diagnoses,
       (SELECT count(*) FROM medications) AS n_medications
FROM (SELECT p, 10 * greatest(25, (p + 249) / 250) AS s
      FROM (SELECT greatest(200, ceil(greatest(scale_mb - 9.3, 1.0) * 190))::bigint AS p
            FROM (SELECT coalesce(nullif(current_setting('hms.scale_mb', true), ''), '50')::numeric AS scale_mb) AS k) AS y) AS x;

ANALYZE hms_gen;

-- ---------------------------------------------------------------- staff
INSERT INTO staff (id, employee_no, first_name, last_name, role, department_id, specialty, license_no,
                   email, phone, hire_date, salary, is_active, created_at) OVERRIDING SYSTEM VALUE
SELECT i,
       'E' || lpad(i::text, greatest(6, length(i::text)), '0'),
       pg_temp.first_name(i * 7 + 3, pg_temp.h(i, 500) % 2 = 0, false),
       pg_temp.last_name(i * 7 + 3, false),
       (ARRAY['doctor','doctor','doctor','nurse','nurse','nurse','nurse','technician','admin','pharmacist']::staff_role[])[((i - 1) % 10 + 1)::int],
       pg_temp.staff_dept(i),
       CASE WHEN (i - 1) % 10 < 3 THEN (ARRAY['Cardiology','Neurology','Medical Oncology','Pediatrics','Orthopedic Surgery','Emergency Medicine','General Surgery','Internal Medicine','Obstetrics','Dermatology','Psychiatry','Nephrology','Gastroenterology','Pulmonology'])[(1 + ((i - 1) / 10) % 14)::int] END,
       CASE WHEN (i - 1) % 10 < 3 THEN 'MD-' || (100000 + pg_temp.h(i, 501) % 900000)::text
            WHEN (i - 1) % 10 < 7 THEN 'RN-' || (100000 + pg_temp.h(i, 501) % 900000)::text
            WHEN (i - 1) % 10 = 9 THEN 'RPH-' || (10000 + pg_temp.h(i, 501) % 90000)::text
            WHEN (i - 1) % 10 = 7 AND pg_temp.h(i, 502) % 2 = 0 THEN 'RT-' || (10000 + pg_temp.h(i, 501) % 90000)::text END,
       pg_temp.first_name(i * 7 + 3, pg_temp.h(i, 500) % 2 = 0, true) || '.' || pg_temp.last_name(i * 7 + 3, true) || i::text || '@hospital.example',
       CASE WHEN pg_temp.h(i, 503) % 10 <> 0 THEN pg_temp.phone(i * 7 + 3) END,
       date '2000-01-01' + (pg_temp.h(i, 504) % 8766)::int,
       CASE WHEN (i - 1) % 10 < 3 THEN 180000 + (pg_temp.h(i, 505) % 17000000) / 100.0
            WHEN (i - 1) % 10 < 7 THEN 60000 + (pg_temp.h(i, 505) % 5000000) / 100.0
            WHEN (i - 1) % 10 = 7 THEN 45000 + (pg_temp.h(i, 505) % 3500000) / 100.0
            WHEN (i - 1) % 10 = 8 THEN 38000 + (pg_temp.h(i, 505) % 3200000) / 100.0
            ELSE 110000 + (pg_temp.h(i, 505) % 4000000) / 100.0 END,
       pg_temp.h(i, 506) % 100 < 93,
       pg_temp.ts((date '2000-01-01' + (pg_temp.h(i, 504) % 8766)::int - date '2015-01-01') * 86400::bigint + 32400)
FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_staff) AS i;

-- ---------------------------------------------------------------- patients
INSERT INTO patients (id, mrn, first_name, last_name, date_of_birth, sex, blood_type, phone, email,
                      address_line, city, postal_code, country_code, insurance_provider, insurance_policy_no,
                      emergency_contact_name, emergency_contact_phone, allergies, registered_at, is_active, notes)
OVERRIDING SYSTEM VALUE
SELECT i,
       'MRN' || lpad(i::text, greatest(8, length(i::text)), '0'),
       pg_temp.first_name(i, sex <> 'M' AND (sex = 'F' OR pg_temp.h(i, 22) % 2 = 0), false),
       pg_temp.last_name(i, false),
       date '2015-01-01' + regday - (pg_temp.h(i, 23) % 32850)::int,
       sex,
       CASE WHEN pg_temp.h(i, 24) % 100 < 15 THEN NULL
            ELSE (ARRAY['O+','O+','O+','O+','O+','O+','O+','O+','O+','O+','O+','A+','A+','A+','A+','A+','A+','A+','A+','A+','A+','B+','B+','B+','AB+','O-','O-','A-','A-','B-'])[(1 + pg_temp.h(i, 25) % 30)::int] END,
       CASE WHEN pg_temp.h(i, 26) % 100 < 96 THEN pg_temp.phone(i) END,
       CASE WHEN pg_temp.h(i, 27) % 100 < 82 THEN
            pg_temp.first_name(i, sex <> 'M' AND (sex = 'F' OR pg_temp.h(i, 22) % 2 = 0), true) || '.'
            || pg_temp.last_name(i, true) || (i % 1000)::text || '@'
            || pg_temp.pick(ARRAY['example.com','example.org','example.net','mail.example'], pg_temp.h(i, 28)) END,
       CASE WHEN pg_temp.h(i, 29) % 100 < 93 THEN
            (1 + pg_temp.h(i, 30) % 9899)::text || ' '
            || pg_temp.pick(ARRAY['Main St','Oak Ave','Maple Dr','Cedar Ln','Elm St','Pine Rd','Washington Blvd','Lake View Ter','Hillcrest Ave','Sunset Blvd','Park Pl','Church St','Mill Rd','River Rd','Highland Ave','Jefferson St'], pg_temp.h(i, 33))
            || CASE WHEN pg_temp.h(i, 34) % 5 = 0 THEN ', Apt ' || (1 + pg_temp.h(i, 35) % 40)::text ELSE '' END END,
       split_part(loc, '|', 2),
       lpad((1 + pg_temp.h(i, 36) % 99998)::text, 5, '0'),
       split_part(loc, '|', 1),
       CASE WHEN pg_temp.patient_insured(i) THEN pg_temp.pick(ARRAY['Aetna','BlueCross BlueShield','Cigna','UnitedHealthcare','Humana','Kaiser Permanente','Medicare','Medicaid','Allianz Care','AXA Santé'], pg_temp.h(i, 37)) END,
       CASE WHEN pg_temp.patient_insured(i) THEN chr((65 + pg_temp.h(i, 38) % 26)::int) || chr((65 + pg_temp.h(i, 39) % 26)::int) || lpad((pg_temp.h(i, 40) % 1000000000)::text, 9, '0') END,
       CASE WHEN pg_temp.h(i, 41) % 100 < 88 THEN pg_temp.first_name(i + 7919, pg_temp.h(i, 42) % 2 = 0, false) || ' ' || pg_temp.last_name(i, false) END,
       CASE WHEN pg_temp.h(i, 41) % 100 < 85 THEN pg_temp.phone(i + 7919) END,
       CASE WHEN pg_temp.h(i, 43) % 100 < 18 THEN ARRAY[pg_temp.pick(ARRAY['Penicillin','Peanuts','Latex','Sulfa drugs','Aspirin','Shellfish','Iodine contrast','Ibuprofen','Eggs','Bee stings'], pg_temp.h(i, 44))]
            WHEN pg_temp.h(i, 43) % 100 < 23 THEN ARRAY[pg_temp.pick(ARRAY['Penicillin','Peanuts','Latex','Sulfa drugs','Aspirin'], pg_temp.h(i, 44)),
                                                    pg_temp.pick(ARRAY['Shellfish','Iodine contrast','Ibuprofen','Eggs','Bee stings'], pg_temp.h(i, 45))] END,
       pg_temp.ts(regday * 86400::bigint + 25200 + pg_temp.h(i, 46) % 43200),
       pg_temp.h(i, 47) % 100 < 97,
       CASE WHEN pg_temp.h(i, 48) % 100 < 12 THEN pg_temp.pick(ARRAY['Prefers morning appointments','Interpreter required: Spanish','Intérprete requerido (español)','Hearing impaired','Wheelchair user','Requests female clinician','Pacemaker fitted','Needle phobia','Vegetarian diet','Prefers contact by e-mail','Legacy record migrated from MediSys 2009','Dolmetscher erforderlich: Deutsch'], pg_temp.h(i, 49)) END
FROM (SELECT i, c.n_legacy,
             CASE WHEN i <= c.n_legacy THEN -1 - (pg_temp.h(i, 50) % 3650)::int
                  ELSE ((i - c.n_legacy - 1) * 3653 / (c.n_patients - c.n_legacy))::int END AS regday,
             pg_temp.patient_sex(i) AS sex,
             CASE WHEN pg_temp.h(i, 51) % 100 < 90 THEN pg_temp.pick(ARRAY['US|Springfield','US|Riverside','US|Fairview','US|Madison','US|Georgetown','US|Franklin','US|Clinton','US|Salem','US|Greenville','US|Bristol','US|Oakland','US|Portland','US|Austin','US|Denver','US|Boston','US|San José'], pg_temp.h(i, 52))
                  ELSE pg_temp.pick(ARRAY['DE|München','CH|Zürich','SE|Malmö','PL|Kraków','FR|Besançon','ES|A Coruña','MX|Ciudad de México','BR|São Paulo','CN|北京','TR|İstanbul','GR|Αθήνα','CA|Montréal'], pg_temp.h(i, 52)) END AS loc
      FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_patients) AS i OFFSET 0) AS s;

-- ---------------------------------------------------------------- appointments
INSERT INTO appointments (id, patient_id, doctor_id, department_id, scheduled_at, duration_minutes, status,
                          reason, diagnosis_id, notes, created_at) OVERRIDING SYSTEM VALUE
SELECT a,
       pg_temp.appt_patient(a, c.n_appointments, c.n_patients, c.n_legacy),
       pg_temp.appt_doctor(a, c.n_doctors),
       pg_temp.appt_dept(a, c.n_doctors),
       pg_temp.ts(pg_temp.appt_secs(a, c.n_appointments)),
       (ARRAY[15, 15, 15, 20, 30, 30, 45, 60])[(1 + pg_temp.h(a, 107) % 8)::int],
       pg_temp.appt_status(a, c.n_appointments),
       pg_temp.pick(ARRAY['Annual physical examination','Follow-up visit','Chest pain','Shortness of breath','Headache and dizziness','Persistent cough','Back pain','Knee pain after fall','Prenatal check-up','Post-operative review','Medication review','Blood pressure check','Diabetes management','Skin rash','Abdominal pain','Fever and chills','Anxiety and sleep problems','Vaccination','Lab results discussion','Pre-surgery assessment','Well-child visit','Palpitations','Joint stiffness','Contrôle de routine'], pg_temp.h(a, 108)),
       CASE WHEN pg_temp.appt_status(a, c.n_appointments) = 'completed' AND pg_temp.h(a, 109) % 100 < 85
            THEN 1 + pg_temp.h(a, 110) % c.n_diagnoses END,
       -- completed visits carry a short clinical note (the bulk of a real EHR is free text)
       CASE WHEN pg_temp.appt_status(a, c.n_appointments) = 'completed' AND pg_temp.h(a, 111) % 100 < 90 THEN
                 pg_temp.pick(ARRAY['Patient reports intermittent chest discomfort for two weeks, worse on exertion, relieved by rest.',
                                    'Presents with a three-day history of productive cough, low-grade fever and fatigue.',
                                    'Follow-up of type 2 diabetes; home glucose readings mostly within target, occasional morning highs.',
                                    'Complains of lower back pain radiating to the left leg after lifting a heavy box at work.',
                                    'Routine review of hypertension; no headaches, chest pain or visual disturbance reported.',
                                    'Reports worsening anxiety and poor sleep over the last month, no thoughts of self-harm.',
                                    'Attends for post-operative wound check ten days after laparoscopic cholecystectomy.',
                                    'Mother reports the child has had ear pain and irritability since yesterday evening.',
                                    'Presents with an itchy erythematous rash on both forearms after starting a new detergent.',
                                    'Reports episodes of palpitations lasting several minutes, no syncope.',
                                    'Seen for antenatal check at 28 weeks; feeling well, good fetal movements.',
                                    'Presents after a fall on an outstretched hand with pain and swelling of the right wrist.',
                                    'Chronic kidney disease review; reports mild ankle swelling in the evenings.',
                                    'Intermittent epigastric burning after meals, worse when lying down.',
                                    'Shortness of breath on climbing stairs, known COPD, using rescue inhaler more often.',
                                    'Recurrent migraines, about four per month, partially responsive to ibuprofen.'], pg_temp.h(a, 112))
                 || ' ' || pg_temp.pick(ARRAY['On examination: BP 138/86, HR 78 regular, SpO2 98% on room air, afebrile.',
                                    'Examination: chest clear, heart sounds normal, no peripheral oedema.',
                                    'Abdomen soft, mild epigastric tenderness, no guarding, bowel sounds present.',
                                    'Tenderness over the distal radius, neurovascularly intact, X-ray requested.',
                                    'Reduced air entry at the left base with crackles; temperature 38.1 °C.',
                                    'Neurological examination unremarkable; fundi normal.',
                                    'Wound healing well, no erythema or discharge, sutures removed.',
                                    'Right tympanic membrane red and bulging; throat mildly inflamed.',
                                    'BMI 31.4, foot examination normal, monofilament sensation intact.',
                                    'Mental state: anxious affect, coherent, good insight, no psychotic features.',
                                    'Fundal height consistent with dates, fetal heart rate 142 bpm.',
                                    'Mild pitting oedema to mid-shin bilaterally; JVP not raised.'], pg_temp.h(a, 113))
                 || ' ' || pg_temp.pick(ARRAY['Plan: continue current medication, repeat bloods in three months.',
                                    'Plan: start antibiotics, safety-netting advice given, review in one week if not improving.',
                                    'Plan: refer to physiotherapy, simple analgesia, return if numbness or weakness develops.',
                                    'Plan: ECG and 24-hour Holter monitor arranged; cardiology follow-up booked.',
                                    'Plan: increase dose, lifestyle advice discussed, HbA1c in three months.',
                                    'Plan: referral to talking therapies, sleep hygiene leaflet provided.',
                                    'Plan: cast applied, fracture clinic in one week, analgesia prescribed.',
                                    'Plan: trial of proton pump inhibitor for eight weeks, avoid late meals.',
                                    'Plan: spirometry booked, inhaler technique reviewed, pulmonary rehab referral.',
                                    'Plan: routine antenatal care, glucose tolerance test at next visit.',
                                    'Plan: emollients and topical steroid, avoid irritant, review in four weeks.',
                                    'Plan: no changes today; patient happy with management. Próxima cita en 6 meses.'], pg_temp.h(a, 114))
            WHEN pg_temp.h(a, 111) % 100 < 25 THEN pg_temp.pick(ARRAY['Patient arrived late','Referred by GP','Interpreter present','Telehealth visit','Bring previous imaging','Fasting required','Accompanied by family member','Re-booked from earlier slot','Wheelchair access needed','Consent form signed'], pg_temp.h(a, 112)) END,
       pg_temp.ts(pg_temp.appt_booked_secs(a, c.n_appointments))
FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_appointments) AS a;

-- ---------------------------------------------------------------- admissions
INSERT INTO admissions (id, patient_id, attending_doctor_id, department_id, ward_id, bed_label, admission_type,
                        primary_diagnosis_id, admitted_at, discharged_at, status, discharge_disposition, notes)
OVERRIDING SYSTEM VALUE
SELECT m, patient, doctor, dept,
       (dept - 1) * 2 + 1 + pg_temp.h(m, 206) % 2,
       chr((65 + pg_temp.h(m, 207) % 4)::int) || lpad((1 + pg_temp.h(m, 208) % 24)::text, 2, '0'),
       CASE WHEN dept = 9 AND pg_temp.patient_sex(patient) = 'F' AND pg_temp.h(m, 209) % 100 < 75 THEN 'maternity'
            WHEN dept = 6 OR pg_temp.h(m, 209) % 100 < 30 THEN 'emergency'
            WHEN pg_temp.h(m, 209) % 100 < 90 THEN 'elective'
            ELSE 'transfer' END,
       1 + pg_temp.h(m, 210) % c.n_diagnoses,
       pg_temp.ts(pg_temp.adm_secs(m, c.n_admissions)),
       pg_temp.ts(out_secs),
       CASE WHEN out_secs IS NULL THEN 'admitted'::admission_status
            WHEN pg_temp.h(m, 211) % 100 < 2 THEN 'deceased'
            WHEN pg_temp.h(m, 211) % 100 < 5 THEN 'transferred'
            ELSE 'discharged' END,
       CASE WHEN out_secs IS NULL THEN NULL
            WHEN pg_temp.h(m, 211) % 100 < 2 THEN 'deceased'
            WHEN pg_temp.h(m, 211) % 100 < 5 THEN 'other_facility'
            ELSE (ARRAY['home','home','home','home','home','home','home_care','home_care','rehab','other_facility'])[(1 + pg_temp.h(m, 212) % 10)::int] END,
       CASE WHEN pg_temp.h(m, 213) % 100 < 35 THEN pg_temp.pick(ARRAY['Fall risk','Isolation precautions','NPO after midnight','Diabetic diet','Telemetry monitoring','DNR on file','Family requests daily update','Physiotherapy consult requested','Social work referral','Wound care twice daily'], pg_temp.h(m, 214)) END
FROM (SELECT m, c.n_admissions, c.n_diagnoses,
             pg_temp.adm_patient(m, c.n_admissions, c.n_patients, c.n_legacy) AS patient,
             pg_temp.adm_doctor(m, c.n_doctors) AS doctor,
             pg_temp.adm_dept(m, c.n_doctors) AS dept,
             pg_temp.adm_out_secs(m, c.n_admissions) AS out_secs
      FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_admissions) AS m OFFSET 0) AS c;

-- ---------------------------------------------------------------- prescriptions
-- 75% written at an appointment (linked only if it was completed; otherwise a repeat
-- prescription issued a week before the visit), 25% during an admission.
INSERT INTO prescriptions (id, patient_id, prescriber_id, medication_id, appointment_id, admission_id, dosage,
                           frequency, duration_days, quantity, refills, status, prescribed_at, instructions)
OVERRIDING SYSTEM VALUE
SELECT i, patient, prescriber, med.id, appointment_id, admission_id,
       CASE med.form WHEN 'tablet' THEN (ARRAY['1 tablet','1 tablet','2 tablets','0.5 tablet'])[(1 + pg_temp.h(i, 305) % 4)::int]
                     WHEN 'capsule' THEN (ARRAY['1 capsule','1 capsule','2 capsules'])[(1 + pg_temp.h(i, 305) % 3)::int]
                     WHEN 'syrup' THEN (ARRAY['5 ml','10 ml','15 ml'])[(1 + pg_temp.h(i, 305) % 3)::int]
                     WHEN 'injection' THEN '1 injection'
                     WHEN 'inhaler' THEN (ARRAY['1 puff','2 puffs'])[(1 + pg_temp.h(i, 305) % 2)::int]
                     WHEN 'cream' THEN 'apply thinly'
                     WHEN 'drops' THEN '1 drop per eye'
                     ELSE '1 patch' END,
       pg_temp.pick(ARRAY['once daily','once daily','twice daily','three times daily','every 8 hours','every 12 hours','at bedtime','as needed'], pg_temp.h(i, 306)),
       days,
       days * (1 + pg_temp.h(i, 307) % 3),
       CASE WHEN pg_temp.h(i, 308) % 100 < 70 THEN 0 ELSE 1 + pg_temp.h(i, 309) % 5 END,
       CASE WHEN prescribed_secs + days * 86400 >= 315619200 THEN 'active'
            WHEN pg_temp.h(i, 310) % 100 < 92 THEN 'completed'
            ELSE 'cancelled' END,
       pg_temp.ts(prescribed_secs),
       CASE WHEN pg_temp.h(i, 311) % 100 < 60 THEN pg_temp.pick(ARRAY['Take with food','Take on an empty stomach','Avoid alcohol','Do not drive after taking','Finish the full course','Take in the morning','Store in a cool, dry place','Tomar con alimentos','Nach dem Essen einnehmen','Shake well before use'], pg_temp.h(i, 312)) END
FROM (SELECT i,
             CASE WHEN appt THEN pg_temp.appt_patient(src, c.n_appointments, c.n_patients, c.n_legacy)
                  ELSE pg_temp.adm_patient(src, c.n_admissions, c.n_patients, c.n_legacy) END AS patient,
             CASE WHEN appt THEN pg_temp.appt_doctor(src, c.n_doctors) ELSE pg_temp.adm_doctor(src, c.n_doctors) END AS prescriber,
             CASE WHEN appt AND pg_temp.appt_status(src, c.n_appointments) = 'completed' THEN src END AS appointment_id,
             CASE WHEN NOT appt THEN src END AS admission_id,
             CASE WHEN NOT appt THEN pg_temp.adm_secs(src, c.n_admissions) + 3600 + pg_temp.h(i, 313) % 43200
                  WHEN pg_temp.appt_status(src, c.n_appointments) = 'completed' THEN pg_temp.appt_secs(src, c.n_appointments) + 1200
                  ELSE least(pg_temp.appt_secs(src, c.n_appointments) - 7 * 86400, 315576000) END AS prescribed_secs,
             (ARRAY[3, 5, 7, 7, 10, 14, 30, 30, 60, 90])[(1 + pg_temp.h(i, 314) % 10)::int] AS days,
             1 + pg_temp.h(i, 304) % c.n_medications AS med_id
      FROM (SELECT i, c.*, pg_temp.h(i, 301) % 100 < 75 AS appt,
                   CASE WHEN pg_temp.h(i, 301) % 100 < 75 THEN 1 + pg_temp.h(i, 302) % c.n_appointments
                        ELSE 1 + pg_temp.h(i, 303) % c.n_admissions END AS src
            FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_prescriptions) AS i OFFSET 0) AS c OFFSET 0) AS r
JOIN medications med ON med.id = r.med_id;

-- ---------------------------------------------------------------- billing (invoices)
-- Invoice a (1..n_appointments) belongs to appointment a: draft while booked, void if cancelled,
-- a no-show fee, or the consultation. Invoice n_appointments + m belongs to admission m.
INSERT INTO billing (id, invoice_no, patient_id, appointment_id, admission_id, issued_at, due_date, currency,
                     subtotal, discount, tax, total_amount, insurance_covered, status, notes) OVERRIDING SYSTEM VALUE
SELECT id,
       'INV-' || pg_temp.year_of(pg_temp.day_of(issued_secs))::text || '-' || lpad(id::text, greatest(8, length(id::text)), '0'),
       patient, appointment_id, admission_id,
       pg_temp.ts(issued_secs),
       date '2015-01-01' + pg_temp.day_of(issued_secs) + 30,
       'USD', subtotal, discount, tax, subtotal - discount + tax,
       CASE WHEN pg_temp.patient_insured(patient) AND status NOT IN ('draft', 'void') AND kind <> 'no_show'
            THEN round((subtotal - discount + tax) * (0.5 + (pg_temp.h(id, 404) % 5) * 0.1), 2) ELSE 0 END,
       status,
       CASE WHEN kind = 'no_show' THEN 'Missed appointment fee'
            WHEN status = 'void' THEN 'Appointment cancelled'
            WHEN pg_temp.h(id, 405) % 100 < 5 THEN 'Payment plan agreed' END
FROM (SELECT inv.*,
             CASE WHEN dept = 10 AND kind = 'completed' THEN round((subtotal - discount) * 0.08, 2) ELSE 0 END AS tax,
             CASE WHEN kind = 'scheduled' OR kind = 'admitted' THEN 'draft'::invoice_status
                  WHEN kind = 'cancelled' THEN 'void'
                  WHEN 3653 - pg_temp.day_of(issued_secs) < 30 THEN
                       CASE WHEN pg_temp.h(id, 401) % 100 < 45 THEN 'paid'::invoice_status ELSE 'issued' END
                  WHEN pg_temp.h(id, 401) % 100 < 84 THEN 'paid'
                  WHEN pg_temp.h(id, 401) % 100 < 91 THEN 'partially_paid'
                  ELSE 'overdue' END AS status
      FROM (SELECT a AS id, patient, a AS appointment_id, NULL::bigint AS admission_id, dept, kind,
                   CASE WHEN kind IN ('completed', 'no_show') THEN secs + 3600
                        ELSE pg_temp.appt_booked_secs(a, n_appointments) END AS issued_secs,
                   CASE kind WHEN 'no_show' THEN 50.00
                             WHEN 'completed' THEN fee + (pg_temp.h(a, 402) % 4) * 35.00
                                                   + CASE WHEN pg_temp.h(a, 406) % 10 = 0 THEN 120.00 ELSE 0 END
                             ELSE fee END AS subtotal,
                   CASE WHEN kind = 'completed' AND pg_temp.h(a, 403) % 100 < 8 THEN round(fee * 0.10, 2) ELSE 0 END AS discount
            FROM (SELECT a, c.n_appointments,
                         pg_temp.appt_patient(a, c.n_appointments, c.n_patients, c.n_legacy) AS patient,
                         pg_temp.appt_dept(a, c.n_doctors) AS dept,
                         pg_temp.consult_fee(pg_temp.appt_dept(a, c.n_doctors)) AS fee,
                         pg_temp.appt_status(a, c.n_appointments)::text AS kind,
                         pg_temp.appt_secs(a, c.n_appointments) AS secs
                  FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_appointments) AS a OFFSET 0) AS x
            UNION ALL
            SELECT n_appointments + m, patient, NULL, m, dept,
                   CASE WHEN out_secs IS NULL THEN 'admitted' ELSE 'discharged' END,
                   coalesce(out_secs, in_secs),
                   pg_temp.ward_rate((dept - 1) * 2 + 1 + pg_temp.h(m, 206) % 2) * (1 + pg_temp.adm_los_secs(m) / 86400)
                     + (pg_temp.h(m, 407) % 8) * 250.00 + (pg_temp.h(m, 408) % 5) * 40.00,
                   CASE WHEN pg_temp.h(m, 409) % 100 < 5 THEN 100.00 ELSE 0 END
            FROM (SELECT m, c.n_appointments,
                         pg_temp.adm_patient(m, c.n_admissions, c.n_patients, c.n_legacy) AS patient,
                         pg_temp.adm_dept(m, c.n_doctors) AS dept,
                         pg_temp.adm_secs(m, c.n_admissions) AS in_secs,
                         pg_temp.adm_out_secs(m, c.n_admissions) AS out_secs
                  FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_admissions) AS m OFFSET 0) AS y) AS inv
      OFFSET 0) AS b;

-- ---------------------------------------------------------------- payments
-- paid: insurance share + patient share (or one payment); partially_paid: one payment.
INSERT INTO payments (id, invoice_id, paid_at, amount, method, reference, received_by_id) OVERRIDING SYSTEM VALUE
SELECT row_number() OVER (ORDER BY b.id, j),
       b.id,
       greatest(b.issued_at, least(b.issued_at + (3600 + pg_temp.h(b.id * 4 + j, 601) % (28 * 86400)) * interval '1 second',
                                   timestamptz '2024-12-31 23:30:00+00')),
       CASE WHEN b.status = 'partially_paid' THEN
                 CASE WHEN b.insurance_covered > 0 THEN b.insurance_covered ELSE round(b.total_amount * 0.4, 2) END
            WHEN b.insurance_covered > 0 AND j = 1 THEN b.insurance_covered
            WHEN b.insurance_covered > 0 THEN b.total_amount - b.insurance_covered
            ELSE b.total_amount END,
       CASE WHEN b.insurance_covered > 0 AND j = 1 THEN 'insurance'::payment_method
            ELSE (ARRAY['card','card','card','card','card','cash','cash','bank_transfer','bank_transfer','cheque']::payment_method[])[(1 + pg_temp.h(b.id * 4 + j, 602) % 10)::int] END,
       CASE WHEN b.insurance_covered > 0 AND j = 1 THEN 'CLM-' || lpad((pg_temp.h(b.id, 603) % 10000000000)::text, 10, '0')
            WHEN pg_temp.h(b.id * 4 + j, 602) % 10 IN (5, 6) THEN NULL
            ELSE 'TXN-' || upper(lpad(to_hex(pg_temp.h(b.id * 4 + j, 604) % 4294967296), 8, '0')) END,
       CASE WHEN (b.insurance_covered > 0 AND j = 1) OR pg_temp.h(b.id * 4 + j, 602) % 10 IN (7, 8) THEN NULL
            ELSE (pg_temp.h(b.id * 4 + j, 605) % c.n_staff / 10) * 10 + 9 END
FROM hms_gen c
CROSS JOIN billing b
CROSS JOIN LATERAL generate_series(1, CASE WHEN b.status = 'paid' AND b.insurance_covered > 0 THEN 2
                                           WHEN b.status IN ('paid', 'partially_paid') THEN 1 ELSE 0 END) AS j
WHERE b.status IN ('paid', 'partially_paid');

UPDATE hms_gen SET n_payments = (SELECT count(*) FROM payments);

-- ---------------------------------------------------------------- audit_log
-- Chronological trail of record views, edits, logins and exports by staff (3% system jobs).
INSERT INTO audit_log (id, occurred_at, actor_staff_id, action, table_name, record_id, client_addr, success, details)
OVERRIDING SYSTEM VALUE
SELECT i,
       pg_temp.ts((i - 1) * spacing + pg_temp.h(i, 701) % spacing),
       actor,
       action,
       tbl,
       CASE tbl WHEN 'patients' THEN 1 + pg_temp.h(i, 703) % greatest(1, i * c.n_patients / c.n_audit)
                WHEN 'appointments' THEN 1 + pg_temp.h(i, 703) % greatest(1, i * c.n_appointments / c.n_audit)
                WHEN 'admissions' THEN 1 + pg_temp.h(i, 703) % greatest(1, i * c.n_admissions / c.n_audit)
                WHEN 'prescriptions' THEN 1 + pg_temp.h(i, 703) % greatest(1, i * c.n_prescriptions / c.n_audit)
                WHEN 'billing' THEN 1 + pg_temp.h(i, 703) % greatest(1, i * (c.n_appointments + c.n_admissions) / c.n_audit)
                WHEN 'payments' THEN 1 + pg_temp.h(i, 703) % greatest(1, i * c.n_payments / c.n_audit) END,
       inet '10.20.0.0' + pg_temp.h(coalesce(actor, 0), 704) % 4096,
       NOT (action = 'LOGIN' AND pg_temp.h(i, 705) % 100 < 6),
       -- built as JSON text and cast: much cheaper than nested jsonb_build_object() calls
       (CASE WHEN action IN ('LOGIN', 'LOGOUT') THEN
                 '{"app": "' || app || '", "session": "' || session || '", "mfa": ' || (pg_temp.h(i, 707) % 10 < 8)::text
                 || ', "user_agent": "' || pg_temp.pick(ARRAY['Mozilla/5.0 (Windows NT 10.0; Win64; x64)','Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2)','HMS-Kiosk/2.3 (Linux)','HMS-Mobile/4.1 (iOS 17.2)'], pg_temp.h(i, 708)) || '"}'
             WHEN action = 'UPDATE' THEN
                 '{"app": "' || app || '", "session": "' || session || '", "changed": {"'
                 || pg_temp.pick(ARRAY['status','notes','phone','email','address_line','dosage','due_date'], pg_temp.h(i, 709))
                 || '": {"old": "' || pg_temp.pick(ARRAY['scheduled','pending','draft','n/a','issued'], pg_temp.h(i, 710))
                 || '", "new": "' || pg_temp.pick(ARRAY['completed','confirmed','issued','updated','paid'], pg_temp.h(i, 711))
                 || '"}}, "reason": "' || pg_temp.pick(ARRAY['treatment','payment','operations','correction'], pg_temp.h(i, 712)) || '"}'
             ELSE '{"app": "' || app || '", "session": "' || session || '", "purpose": "'
                 || pg_temp.pick(ARRAY['treatment','treatment','treatment','payment','operations','audit','patient request'], pg_temp.h(i, 712))
                 || '", "rows": ' || CASE WHEN action IN ('EXPORT', 'PRINT') THEN (1 + pg_temp.h(i, 713) % 500)::text ELSE '1' END || '}'
        END)::jsonb
FROM (SELECT c.*,
             CASE WHEN action IN ('LOGIN', 'LOGOUT') THEN NULL
                  ELSE pg_temp.pick(ARRAY['patients','patients','patients','appointments','appointments','admissions','prescriptions','prescriptions','billing','payments'], pg_temp.h(i, 719)) END AS tbl
      FROM (SELECT i, c.*, greatest(1, 315619200 / c.n_audit) AS spacing,
                   CASE WHEN pg_temp.h(i, 702) % 100 < 3 THEN NULL ELSE 1 + pg_temp.h(i, 714) % c.n_staff END AS actor,
                   CASE WHEN pg_temp.h(i, 718) % 1000 < 4 THEN 'EXPORT'
                        WHEN pg_temp.h(i, 718) % 1000 < 6 THEN 'DELETE'
                        ELSE (ARRAY['SELECT','SELECT','SELECT','SELECT','SELECT','SELECT','SELECT','SELECT','SELECT','UPDATE','UPDATE','UPDATE','UPDATE','INSERT','INSERT','INSERT','LOGIN','LOGIN','LOGOUT','PRINT'])[(1 + pg_temp.h(i, 715) % 20)::int] END AS action,
                   pg_temp.pick(ARRAY['hms-web/4.2.1','hms-web/4.2.1','hms-web/4.3.0','hms-mobile/2.0.7','hms-kiosk/2.3.0'], pg_temp.h(i, 717)) AS app,
                   to_hex(pg_temp.h(i / 7, 706)) AS session
            FROM hms_gen c CROSS JOIN generate_series(1::bigint, c.n_audit) AS i OFFSET 0) AS c
      OFFSET 0) AS c;

-- ---------------------------------------------------------------- identity sequences
-- Explicit ids were inserted: move every identity sequence past them so the application's
-- own INSERTs (GENERATED ALWAYS) continue without collisions.
SELECT setval(pg_get_serial_sequence('departments', 'id'), (SELECT max(id) FROM departments));
SELECT setval(pg_get_serial_sequence('wards', 'id'), (SELECT max(id) FROM wards));
SELECT setval(pg_get_serial_sequence('diagnoses', 'id'), (SELECT max(id) FROM diagnoses));
SELECT setval(pg_get_serial_sequence('medications', 'id'), (SELECT max(id) FROM medications));
SELECT setval(pg_get_serial_sequence('staff', 'id'), (SELECT max(id) FROM staff));
SELECT setval(pg_get_serial_sequence('patients', 'id'), (SELECT max(id) FROM patients));
SELECT setval(pg_get_serial_sequence('appointments', 'id'), (SELECT max(id) FROM appointments));
SELECT setval(pg_get_serial_sequence('admissions', 'id'), (SELECT max(id) FROM admissions));
SELECT setval(pg_get_serial_sequence('prescriptions', 'id'), (SELECT max(id) FROM prescriptions));
SELECT setval(pg_get_serial_sequence('billing', 'id'), (SELECT max(id) FROM billing));
SELECT setval(pg_get_serial_sequence('payments', 'id'), (SELECT max(id) FROM payments));
SELECT setval(pg_get_serial_sequence('audit_log', 'id'), (SELECT max(id) FROM audit_log));

DROP TABLE pg_temp.hms_gen;
DROP FUNCTION pg_temp.h, pg_temp.ts, pg_temp.pick, pg_temp.day_of, pg_temp.name_group, pg_temp.first_name,
    pg_temp.last_name, pg_temp.phone, pg_temp.doctor, pg_temp.staff_dept, pg_temp.patient_upto, pg_temp.patient_sex,
    pg_temp.patient_insured, pg_temp.year_of, pg_temp.doctor_dept, pg_temp.appt_dept, pg_temp.adm_dept, pg_temp.appt_day, pg_temp.appt_secs, pg_temp.appt_patient, pg_temp.appt_doctor,
    pg_temp.appt_status, pg_temp.appt_booked_secs, pg_temp.adm_day, pg_temp.adm_secs, pg_temp.adm_patient,
    pg_temp.adm_doctor, pg_temp.adm_los_secs, pg_temp.adm_out_secs, pg_temp.ward_rate, pg_temp.consult_fee;
