-- Two ways to learn the tree (docs/lineage.md): a walk lists the children of every model of the
-- tree, one listing per model and every relation at once; a scan pages through the whole Hub
-- listing and computes the tree here, from a Hub-wide index of declared parents.

-- Which way a full crawl went, and why (auto's estimates); NULL for incremental crawls.
ALTER TABLE crawl_runs ADD COLUMN strategy VARCHAR;
ALTER TABLE crawl_runs ADD COLUMN strategy_plan JSON;

-- A walk lists every relation of a model in one listing (`filter=base_model:<id>`), so listings
-- are kept per model. Listings of unfinished runs are dropped: their models are listed again.
CREATE TABLE crawl_listings_v6 (
    repo_id    VARCHAR PRIMARY KEY,
    crawl_id   INTEGER NOT NULL,
    listed_at  TIMESTAMPTZ NOT NULL,
    n_children INTEGER NOT NULL
);
INSERT INTO crawl_listings_v6
SELECT repo_id, max(crawl_id), min(listed_at), sum(n_children)::INTEGER FROM crawl_listings
WHERE crawl_id IN (SELECT crawl_id FROM crawl_runs WHERE status = 'done')
GROUP BY repo_id;
DROP TABLE crawl_listings;
ALTER TABLE crawl_listings_v6 RENAME TO crawl_listings;

-- The Hub-wide index: every model on the Hub whose tags name a base model, as the last scan and
-- the change feed since then saw it. The tree is computed from it after a scan, and a model that
-- joins the tree later brings its subtree from here without a request.
CREATE TABLE crawl_hub_index (
    repo_id    VARCHAR PRIMARY KEY,
    parents    VARCHAR[] NOT NULL,  -- the ids P of its `base_model:P` tags (what `filter=base_model:P` matches)
    created_at TIMESTAMPTZ,
    raw        JSON NOT NULL,       -- the listing's JSON for the model
    crawl_id   INTEGER NOT NULL     -- the crawl that last saw it
);

-- Where a scan stands: its next page, written with each page, so that a killed scan resumes there.
CREATE TABLE crawl_scans (
    crawl_id  INTEGER PRIMARY KEY,
    next_url  VARCHAR,              -- NULL once the last page is in
    pages     INTEGER NOT NULL,
    listed    BIGINT NOT NULL,      -- models listed: the whole Hub, once the scan is done
    indexed   BIGINT NOT NULL,      -- of which name a base model
    done      BOOLEAN NOT NULL
);
