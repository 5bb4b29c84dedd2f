-- Large objects the current role cannot read, which pg_dump --blobs would stop at with
-- "permission denied for large object": pg_read_all_data does not cover them. Readable are those
-- it owns (or whose owner's privileges it has), those granted SELECT to it, to a role whose
-- privileges it has or to PUBLIC; every one for a superuser or with lo_compat_privileges on.
-- One row: how many large objects exist, how many are unreadable, the first oids of those, and
-- the role's name quoted for a GRANT.
WITH role AS (
    SELECT r.rolsuper OR current_setting('lo_compat_privileges')::boolean AS reads_every_one
    FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
), unreadable AS (
    SELECT m.oid
    FROM pg_catalog.pg_largeobject_metadata m, role
    WHERE NOT role.reads_every_one
      AND NOT pg_has_role(current_user, m.lomowner, 'USAGE')
      AND NOT EXISTS (
          SELECT 1
          FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) AS a
          WHERE a.privilege_type = 'SELECT'
            -- grantee 0 is PUBLIC, which pg_has_role does not know
            AND CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role(current_user, a.grantee, 'USAGE') END)
)
SELECT (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata) AS large_objects,
       (SELECT count(*) FROM unreadable) AS unreadable,
       (SELECT coalesce(array_agg(oid ORDER BY oid), '{}') FROM (SELECT oid FROM unreadable ORDER BY oid LIMIT 5) AS first) AS first_oids,
       quote_ident(current_user) AS role_name;
