-- The lineage crawl: runs, models, declared edges and their defects.
-- Public tables (documented in README.md, stable): crawl_runs, models, lineage, lineage_defects,
-- model_changes, lineage_changes. Tables starting with crawl_ are the crawler's bookkeeping.

CREATE TABLE crawl_runs (
    crawl_id        INTEGER PRIMARY KEY,
    mode            VARCHAR NOT NULL CHECK (mode IN ('full', 'incremental')),
    status          VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    endpoint        VARCHAR NOT NULL,
    roots           VARCHAR[] NOT NULL,
    -- HTTP requests sent, retries included, summed over every attempt of this run.
    requests        BIGINT NOT NULL DEFAULT 0,
    -- How many times an interrupted run was picked up again.
    resumed         INTEGER NOT NULL DEFAULT 0,
    -- The Hub's lastModified high-water mark at the start: the next incremental crawl reads the
    -- change feed back to here.
    feed_watermark  TIMESTAMPTZ,
    -- Where this run's change feed started (incremental runs).
    feed_since      TIMESTAMPTZ,
    models_seen     INTEGER,
    models_new      INTEGER,
    models_changed  INTEGER,
    models_removed  INTEGER,
    edges_new       INTEGER,
    edges_removed   INTEGER,
    defects         INTEGER,
    failed_listings INTEGER,
    summary         JSON,
    config          JSON,
    auditor_version VARCHAR NOT NULL,
    error           VARCHAR
);

CREATE TABLE models (
    repo_id          VARCHAR PRIMARY KEY,
    sha              VARCHAR,
    author           VARCHAR,
    created_at       TIMESTAMPTZ,
    last_modified    TIMESTAMPTZ,
    downloads        BIGINT,
    likes            BIGINT,
    gated            VARCHAR,          -- 'false', 'auto' or 'manual', as the Hub says
    private          BOOLEAN,
    library_name     VARCHAR,
    pipeline_tag     VARCHAR,
    license          VARCHAR,
    num_parameters   BIGINT,
    tags             VARCHAR[],
    children_count   JSON,             -- the Hub's childrenModelCount: {"finetune": 3, ...}
    relation         VARCHAR,          -- relation to its declared parents (NULL for roots)
    family           VARCHAR,          -- family of the nearest root
    root             VARCHAR,          -- the nearest root
    depth            INTEGER,          -- hops from that root
    is_root          BOOLEAN NOT NULL DEFAULT false,
    raw              JSON,             -- the Hub's JSON, unparsed
    first_seen_crawl INTEGER NOT NULL,
    last_seen_crawl  INTEGER NOT NULL,
    changed_crawl    INTEGER NOT NULL, -- last crawl that found a new sha or new parents
    stats_at         TIMESTAMPTZ,      -- when downloads and likes were read
    removed_at       TIMESTAMPTZ,      -- NULL while the model is in the tree
    removed_crawl    INTEGER,
    removed_reason   VARCHAR           -- 'unlisted' (deleted, or no longer listed under the tree) or 'left_tree'
);

-- One row per declared parent of every model in `models` (removed models keep their last
-- declaration, so past audits keep their lineage).
CREATE TABLE lineage (
    child            VARCHAR NOT NULL,
    parent           VARCHAR NOT NULL,
    relation         VARCHAR NOT NULL CHECK (relation IN ('finetune', 'adapter', 'quantized', 'merge')),
    source           VARCHAR NOT NULL, -- 'baseModels', 'tags' or 'cardData'
    position         INTEGER NOT NULL, -- order of the parent in the declaration
    first_seen_crawl INTEGER NOT NULL,
    last_seen_crawl  INTEGER NOT NULL,
    PRIMARY KEY (child, parent)
);

CREATE TABLE lineage_defects (
    repo_id  VARCHAR NOT NULL,
    kind     VARCHAR NOT NULL,
    detail   VARCHAR NOT NULL,
    crawl_id INTEGER NOT NULL,
    PRIMARY KEY (repo_id, kind, detail)
);

-- What each crawl changed: the audit trail behind a run's summary.
CREATE TABLE model_changes (
    crawl_id INTEGER NOT NULL,
    repo_id  VARCHAR NOT NULL,
    change   VARCHAR NOT NULL CHECK (change IN ('new', 'changed', 'removed', 'restored')),
    old_sha  VARCHAR,
    new_sha  VARCHAR,
    reason   VARCHAR
);

CREATE TABLE lineage_changes (
    crawl_id INTEGER NOT NULL,
    child    VARCHAR NOT NULL,
    parent   VARCHAR NOT NULL,
    relation VARCHAR NOT NULL,
    change   VARCHAR NOT NULL CHECK (change IN ('added', 'removed'))
);

-- Crawler bookkeeping: when the children of (repo_id, relation) were last listed, and by which
-- crawl. An interrupted crawl resumes from the models it saw but has not listed yet.
CREATE TABLE crawl_listings (
    repo_id    VARCHAR NOT NULL,
    relation   VARCHAR NOT NULL,
    crawl_id   INTEGER NOT NULL,
    listed_at  TIMESTAMPTZ NOT NULL,
    n_children INTEGER NOT NULL,
    PRIMARY KEY (repo_id, relation)
);
