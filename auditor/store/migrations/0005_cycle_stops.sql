-- A cycle asked to stop (SIGTERM, Ctrl-C) ends `stopped`: its work in hand is resumed by the next
-- cycle. DuckDB cannot alter a CHECK constraint, so the table is rebuilt with its rows.

CREATE TABLE cycles_v5 (
    cycle_id    INTEGER PRIMARY KEY,
    status      VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'stopped', 'failed')),
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    took_over   BOOLEAN NOT NULL DEFAULT false,  -- a previous cycle died holding the lock
    crawl_id    INTEGER,
    planned     INTEGER,
    audited     INTEGER,
    failed      INTEGER,
    waiting     INTEGER,                        -- pending models left for a later night
    budget      JSON,
    summary     JSON,
    error       VARCHAR
);
INSERT INTO cycles_v5 SELECT * FROM cycles;
DROP TABLE cycles;
ALTER TABLE cycles_v5 RENAME TO cycles;
