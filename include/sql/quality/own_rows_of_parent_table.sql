-- The rows of a table itself, not its children's (of a partitioned or inheritance parent), as
-- baseline.count_rows counts them (a GX query asset). {relation} is a quoted relation name.
SELECT * FROM ONLY {relation};
