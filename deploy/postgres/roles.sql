-- usqa's PostgreSQL roles: nothing runs as the superuser. Run as a superuser (postgres),
-- connected to the usqa database; safe to run again (it creates what is missing and resets
-- the passwords and grants to what is written here):
--
--   psql -v ON_ERROR_STOP=1 -d usqa -f roles.sql \
--        -v owner_password=... -v app_password=... [-v reader_password=...]
--
-- Passwords: long random letters and digits (`openssl rand -hex 24`), so that they can be
-- pasted into a database URL as they are. The roles:
--
--   usqa_owner      owns the tables and views: only `usqa db upgrade` (the migration job)
--                   connects as it. Not a superuser; cannot create databases or roles.
--   usqa_app        what `usqa ingest`, `usqa worker`, `usqa run`, `usqa status`,
--                   `usqa report`... connect as: reads and writes rows, never the schema.
--   usqa_dashboard  a group without login: SELECT on the qa_* views only (not the tables),
--                   granted here and again by every `usqa db upgrade`.
--   usqa_reader     the login of Grafana, Metabase or Power BI: member of usqa_dashboard.
--                   Created only when reader_password is given.

\set ON_ERROR_STOP on

SELECT 'CREATE ROLE usqa_owner' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'usqa_owner') \gexec
SELECT 'CREATE ROLE usqa_app' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'usqa_app') \gexec
SELECT 'CREATE ROLE usqa_dashboard' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'usqa_dashboard') \gexec
ALTER ROLE usqa_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_password';
ALTER ROLE usqa_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'app_password';
ALTER ROLE usqa_dashboard WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;

\if :{?reader_password}
SELECT 'CREATE ROLE usqa_reader' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'usqa_reader') \gexec
ALTER ROLE usqa_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'reader_password';
GRANT usqa_dashboard TO usqa_reader;
\endif

-- Only usqa's roles may connect to this database; only usqa_owner may change its schema.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"DBNAME" TO usqa_owner, usqa_app, usqa_dashboard;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO usqa_owner;
GRANT USAGE ON SCHEMA public TO usqa_app, usqa_dashboard;

-- Rows, never the schema: what usqa_owner creates from now on, and what it has already.
ALTER DEFAULT PRIVILEGES FOR ROLE usqa_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO usqa_app;
ALTER DEFAULT PRIVILEGES FOR ROLE usqa_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO usqa_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO usqa_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO usqa_app;

-- Dashboards: the qa_* views that exist already (`usqa db upgrade` grants the others).
SELECT format('GRANT SELECT ON public.%I TO usqa_dashboard', viewname)
FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'qa\_%' \gexec
