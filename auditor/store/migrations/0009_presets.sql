-- Presets that say how they run. `paper` is now the authors' loop item by item (batches of 16 in
-- dataset order, fp16, pad = eos, the decoded-minus-prompt continuation, the paper's classifier);
-- what it was before (the configured batch size sorted by length, the configured quantization and
-- compute dtype, the tokenizer's pad token, the generated tokens decoded) is the `nightly` preset.
-- So every audit made as `paper` before this is relabelled `nightly`, and its preset_hash becomes
-- the one `auditor.audit.presets.settings_hash` gives nightly for the batch size it ran with (recorded
-- in its config) and the device's compute dtype: the key a new nightly audit of the same model
-- has, so nothing is audited again. `chat` audits keep their name and get their new hash alike.
-- The string below is `json.dumps(settings, sort_keys=True)` of those settings;
-- tests/auditor/test_presets.py checks that it gives the same hash as the Python code.

UPDATE audits SET
    preset = CASE preset WHEN 'paper' THEN 'nightly' ELSE preset END,
    preset_hash = left(sha256(
        '{"batch_size": ' || CAST(json_extract(config, '$.resolved.audit.batch_size') AS INTEGER)
        || ', "chat": ' || CASE preset WHEN 'chat' THEN 'true' ELSE 'false' END
        || ', "continuation": "new-tokens", "do_sample": false, "dtype": "'
        || CASE device WHEN 'cuda' THEN 'bfloat16' ELSE 'float32' END
        || '", "max_new_tokens": 50, "name": "' || CASE preset WHEN 'paper' THEN 'nightly' ELSE preset END
        || '", "num_return_sequences": 1, "order": "length", "out_of_memory": "halve", "pad": "tokenizer",'
        || ' "padding_side": "left", "precision": "configured", "scorers": [], "truncation": false}'
    ), 16)
WHERE preset IN ('paper', 'chat') AND json_extract(config, '$.resolved.audit.batch_size') IS NOT NULL;

-- Audits without a recorded batch size (none are expected) are relabelled and keep their hash.
UPDATE audits SET preset = 'nightly' WHERE preset = 'paper';
