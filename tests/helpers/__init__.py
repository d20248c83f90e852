"""Plain helpers and constants the tests import (pytest's docs advise against importing conftest).

- `env`: `HF_HOME`, the session's private Hugging Face home; importing the module creates it
  (once, with `tempfile.mkdtemp`) and points the environment at it.
- `crawls`: simulated worlds and crawls: `fresh_world`, `sim_config`, `run_crawl`, the progress
  callbacks `interrupt_after` and `interrupt_once_the_feed_is_read`, and the checks of a crawled
  store `stored_lineage`, `store_digest` and `assert_matches_truth`.
- `audits`: audits against a world of tiny real models: `ACCEPTED_TOKEN`, `TINY_CACHE`,
  `audit_world`, `audit_config`, `audit_env` and `running_audit`.
- `stores`: `store_at_schema`, a DuckDB file as an auditor of an older schema left it.
- `hosts`: `RecordingHandler`, the request handler of a second host that notes what it receives.

`tests/conftest.py` keeps only fixtures, which import what they need from here; new helpers go here,
not there. (`tests/reports/conftest.py` builds its `small_store` fixtures with a private builder no
test module imports.)
"""
