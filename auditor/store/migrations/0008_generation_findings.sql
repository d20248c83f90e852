-- The preset, not the repo, decides how a model is asked (docs/audits.md, "How a model is asked").
-- A repo's generation_config.json is never applied; it is kept with the audit, and each setting in
-- it that would have changed generation (suppressed or forced tokens, beams, sampling, penalties,
-- lengths) is flagged, so a repo that tries to steer its own audit shows in the store.
-- Public: audits.repo_generation_config, audits.findings.

-- The repo's generation_config.json as read (an adapter's own, else its base's); NULL when the
-- repo has none, when it is not a JSON object, and for audits made before this column existed.
ALTER TABLE audits ADD COLUMN repo_generation_config JSON;

-- Defect flags of the audited repo, sorted: 'ignored_generation_config:<setting>' for each declared
-- setting the audit did not apply, 'unreadable_generation_config'. An empty list: nothing found;
-- NULL: not looked at (the model never loaded, or the audit predates this column).
ALTER TABLE audits ADD COLUMN findings VARCHAR[];
