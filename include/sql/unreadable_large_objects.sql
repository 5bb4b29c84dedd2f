-- Large objects the current role cannot read: pg_dump --blobs stops on the first with "permission
-- denied for large object". pg_read_all_data does not cover large objects; a superuser, the
-- object's owner (or a member of it), a SELECT grant, or lo_compat_privileges = on does.
-- (has_largeobject_privilege() only exists from PostgreSQL 17: the ACL is read directly.)
WITH readable AS (
    SELECT m.oid,
           current_setting('lo_compat_privileges')::bool
           OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
           OR pg_catalog.pg_has_role(current_user, m.lomowner, 'USAGE')
           OR EXISTS (SELECT 1
                        FROM pg_catalog.aclexplode(m.lomacl) AS a
                       WHERE a.privilege_type = 'SELECT'
                         AND (a.grantee = 0 OR pg_catalog.pg_has_role(current_user, a.grantee, 'USAGE'))) AS can_read
      FROM pg_catalog.pg_largeobject_metadata m
)
SELECT count(*) AS large_objects,
       count(*) FILTER (WHERE NOT can_read) AS unreadable,
       coalesce((array_agg(oid::bigint ORDER BY oid) FILTER (WHERE NOT can_read))[1:10], '{}') AS first_unreadable
  FROM readable;
