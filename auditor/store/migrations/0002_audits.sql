-- Audits: batteries of prompts, one audit per (model sha, battery, preset, quantization, scorer),
-- every completion and every score. Public tables: batteries, prompts, battery_prompts, audits,
-- completions, scores.

CREATE TABLE prompts (
    prompt_id   VARCHAR PRIMARY KEY,   -- stable: a hash of the source repo and the prompt's text
    source_repo VARCHAR NOT NULL,
    text        VARCHAR NOT NULL,
    challenging BOOLEAN,
    -- The dataset's own Perspective scores of the prompt: {"toxicity": 0.8, "insult": 0.7, ...}
    perspective JSON
);

CREATE TABLE batteries (
    battery_id      VARCHAR PRIMARY KEY,  -- a hash of the definition and the selected prompts
    name            VARCHAR NOT NULL,     -- 'quick', 'standard'
    source_repo     VARCHAR NOT NULL,
    source_revision VARCHAR NOT NULL,     -- the dataset commit the prompts were first read at
    definition      JSON NOT NULL,
    n_prompts       INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE battery_prompts (
    battery_id VARCHAR NOT NULL,
    prompt_id  VARCHAR NOT NULL,
    stratum    VARCHAR NOT NULL,  -- an attribute (challenging prompts) or 'benign'
    position   INTEGER NOT NULL,
    PRIMARY KEY (battery_id, prompt_id)
);

CREATE SEQUENCE audit_ids START 1;

CREATE TABLE audits (
    audit_id           INTEGER PRIMARY KEY DEFAULT nextval('audit_ids'),
    repo_id            VARCHAR NOT NULL,
    sha                VARCHAR,
    battery_id         VARCHAR NOT NULL,
    preset             VARCHAR NOT NULL,
    preset_hash        VARCHAR NOT NULL,  -- hash of the generation settings
    generation_config  JSON NOT NULL,     -- the effective settings of generate(), the model's defaults included
    chat_template_hash VARCHAR,
    quantization       VARCHAR NOT NULL,  -- 'nf4', 'int8', 'none', or 'pre-<method>' for pre-quantized repos
    scorer             VARCHAR NOT NULL,
    scorer_hash        VARCHAR,           -- hash of the scorer's checkpoint
    device             VARCHAR NOT NULL,  -- 'cpu' or 'cuda' (numbers differ between them)
    status             VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'failed', 'skipped')),
    reason             VARCHAR,           -- why failed or skipped, or a fallback that was used
    reason_code        VARCHAR,           -- the reason in a word: gated, pickle, corrupt, no_tokenizer, ...
    base_repo          VARCHAR,           -- for adapters: the base they were loaded onto
    base_sha           VARCHAR,
    versions           JSON,              -- library versions, GPU and CUDA, compute dtype
    timings            JSON,              -- seconds: download, load, generate, score
    config             JSON,
    n_prompts          INTEGER,
    n_completions      INTEGER,
    n_scored           INTEGER,
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    auditor_version    VARCHAR NOT NULL
);

-- One row per (audit_id, prompt_id) in completions and per (audit_id, prompt_id, attribute) in
-- scores. The writer keeps them unique (it inserts only what is missing) rather than a primary
-- key: at millions of rows, the index would be most of the file's size.
CREATE TABLE completions (
    audit_id      INTEGER NOT NULL,
    prompt_id     VARCHAR NOT NULL,
    -- Most of a store's bytes: zstd packs generated text about 15% tighter than the default.
    text          VARCHAR NOT NULL USING COMPRESSION zstd,
    n_tokens      INTEGER NOT NULL,
    finish_reason VARCHAR NOT NULL   -- 'eos' or 'length'
);

CREATE TABLE scores (
    audit_id  INTEGER NOT NULL,
    prompt_id VARCHAR NOT NULL,
    attribute VARCHAR NOT NULL,
    score     DOUBLE,     -- NULL when the scorer could not score this text
    reason    VARCHAR     -- why it is NULL
);
