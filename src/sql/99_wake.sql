-- runners already connected to this database notice the new extension (or its
-- new version) now, and the launcher serves the database from the commit on
-- (nothing to wake when the library is not preloaded)
DO $$
BEGIN
    PERFORM workflow._wake_at_commit(NULL);
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    NULL;
END
$$;
