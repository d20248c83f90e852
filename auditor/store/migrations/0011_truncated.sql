-- Prompts are truncated: one longer than `[audit] max_prompt_tokens` (512) keeps its last tokens,
-- which the model continues (`auditor.audit.generation.prepare`), and a preset that truncates
-- (`paper`) also cuts at the tokenizer's `model_max_length`, as it always did. How many of the
-- battery's prompts a model was given only part of is recorded with the audit.
-- Public: audits.n_truncated.

-- The battery's prompts the model was given only the end of (the part that fits), counted once
-- the model is loaded; 0 when none was. NULL: not counted (the model never loaded, or the audit
-- predates this column).
ALTER TABLE audits ADD COLUMN n_truncated INTEGER;
