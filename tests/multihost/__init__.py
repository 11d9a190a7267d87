"""Several supervisors serving one app from one PostgreSQL, each on a "host" of its own
(a network namespace), so that a host can be killed or cut off from the database."""
