-- A database nobody at the hospital wrote: every kind of object pg_dump handles that hms-dr
-- must back up, verify, restore-test and DR-restore. Loaded by odd_database.create_odd_database,
-- as a superuser, into a new database; the large object is added there (it needs its owner role).

CREATE SCHEMA sales;
-- Capitals and a space in a schema's name: GX would fold a table asset's schema to lower case.
CREATE SCHEMA "Audit Trail";

CREATE TYPE public.order_status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN public.positive_amount AS numeric(12, 2) CHECK (VALUE > 0);

CREATE TABLE public.customers (id integer PRIMARY KEY, name text NOT NULL);

-- A space in its name, an enum and a domain column, a mixed-case column, a trigger.
CREATE TABLE public."Order Details" (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customers (id),
    status public.order_status NOT NULL,
    amount public.positive_amount NOT NULL,
    "Note" text
);

CREATE FUNCTION public.default_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."Note" := coalesce(NEW."Note", 'no note');
    RETURN NEW;
END
$$;
CREATE TRIGGER order_details_default_note BEFORE INSERT ON public."Order Details"
    FOR EACH ROW EXECUTE FUNCTION public.default_note();

CREATE TABLE public."MixedCase" (id integer PRIMARY KEY, "Label" text NOT NULL);

-- No primary key: a plain log.
CREATE TABLE sales.events (happened_at timestamptz NOT NULL, kind text NOT NULL, detail jsonb);

-- Partitioned by range, one partition sub-partitioned by list (one sub-partition's name has a space).
CREATE TABLE sales.measurements (
    id bigint NOT NULL,
    taken_on date NOT NULL,
    region text NOT NULL,
    reading numeric NOT NULL
) PARTITION BY RANGE (taken_on);
CREATE TABLE sales.measurements_2024 PARTITION OF sales.measurements
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE sales.measurements_2025 PARTITION OF sales.measurements
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY LIST (region);
CREATE TABLE sales."measurements_2025 North" PARTITION OF sales.measurements_2025 FOR VALUES IN ('north');
CREATE TABLE sales.measurements_2025_south PARTITION OF sales.measurements_2025 FOR VALUES IN ('south');

CREATE TABLE "Audit Trail"."Entries" (id integer PRIMARY KEY, what text NOT NULL);

CREATE VIEW public.paid_orders AS
    SELECT d.id, c.name, d.amount
    FROM public."Order Details" AS d JOIN public.customers AS c ON c.id = d.customer_id
    WHERE d.status = 'paid';

CREATE MATERIALIZED VIEW sales.readings_by_region AS
    SELECT region, count(*) AS readings, sum(reading) AS total FROM sales.measurements GROUP BY region;

INSERT INTO public.customers SELECT i, 'customer ' || i FROM generate_series(1, 40) AS i;
INSERT INTO public."Order Details" (id, customer_id, status, amount, "Note")
    SELECT i, 1 + i % 40, (ARRAY['new', 'paid', 'shipped'])[1 + i % 3]::public.order_status, 10 + i * 0.25,
           CASE WHEN i % 4 = 0 THEN 'gift wrap' END
    FROM generate_series(1, 300) AS i;
INSERT INTO public."MixedCase" SELECT i, 'Label ' || i FROM generate_series(1, 25) AS i;
INSERT INTO sales.events
    SELECT timestamptz '2025-03-01 00:00+00' + i * interval '7 minutes', (ARRAY['login', 'scan', 'login'])[1 + i % 3],
           jsonb_build_object('n', i)
    FROM generate_series(1, 200) AS i;
INSERT INTO sales.measurements
    SELECT i, date '2024-06-01' + (i % 500), (ARRAY['north', 'south'])[1 + i % 2], i * 1.5
    FROM generate_series(1, 1000) AS i;
INSERT INTO "Audit Trail"."Entries" SELECT i, 'entry ' || i FROM generate_series(1, 12) AS i;
REFRESH MATERIALIZED VIEW sales.readings_by_region;
