-- The rows of a partitioned or inheritance parent table itself, not its children's, as
-- baseline.count_rows counts them (a GX query asset). {relation} is a quoted relation name.
SELECT * FROM ONLY {relation};
