-- The nightly cycle: each run, and the plan it made (what it chose to audit, in which order, and why;
-- what waits for the next night).

CREATE TABLE cycles (
    cycle_id    INTEGER PRIMARY KEY,
    status      VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'failed')),
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

CREATE TABLE cycle_plan (
    cycle_id  INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    repo_id   VARCHAR NOT NULL,
    sha       VARCHAR NOT NULL,
    reason    VARCHAR NOT NULL,  -- 'root or parent', 're-pushed', 'new derivative'
    chosen    BOOLEAN NOT NULL,  -- within tonight's budget
    audit_id  INTEGER,           -- the audit it got, once done
    status    VARCHAR,
    PRIMARY KEY (cycle_id, position)
);
