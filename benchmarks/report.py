"""Benchmark: the drift report and lineage queries on a store of 10,000 audits of 1,200 prompts.

    python benchmarks/report.py [--audits 10000] [--prompts 1200] [--keep PATH]

Builds a synthetic store (through the store's own migrations): a lineage of `--audits` models
under the paper's ten roots, one done audit per model on one battery of `--prompts` prompts, a
completion of 20 to 50 varied words and a Detoxify `toxicity` score for every prompt (12 million of
each by default), with
per-prompt propensities so that children resemble their parents and some derivatives drift. Then
times, each in a fresh process:

- the comparisons of every audit with its parent's and root's, which the auditor makes as each
  audit finishes (here all at once);
- `auditor report drift --format json` and the table of the top 20, and the same report on a copy
  of the store whose comparisons were deleted (it then computes them all first);
- a `lineage_closure` query (every descendant of one root, with its audited rate);

and prints the store's size on disk. Targets: the drift report under 3 seconds, the store under
1 GB. A benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from auditor.config import DEFAULT_ROOTS
from auditor.lineage import LineageGraph
from auditor.store import Store
from auditor.store.database import staged


def build(path: Path, n_models: int, n_prompts: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    roots = list(DEFAULT_ROOTS)
    ids = roots + [f"user{i % 997}/derivative-{i}" for i in range(n_models - len(roots))]
    parent_index = np.zeros(len(ids), dtype=np.int64)
    for i in range(len(roots), len(ids)):
        # Mostly children of roots, some of earlier derivatives: a few generations deep.
        earlier = i > len(roots) and rng.random() >= 0.6
        parent_index[i] = rng.integers(len(roots), i) if earlier else rng.integers(0, len(roots))
    relations = rng.choice(["finetune", "adapter", "quantized", "merge"], size=len(ids), p=[0.4, 0.25, 0.28, 0.07])
    edges = [(ids[i], ids[parent_index[i]], str(relations[i])) for i in range(len(roots), len(ids))]
    graph = LineageGraph.from_edges(edges)
    placement = graph.place(roots)

    # Toxicity propensity per (model, prompt): a child inherits its parent's, a few drift up.
    base = rng.beta(0.5, 9.5, size=n_prompts)
    propensity = np.empty((len(ids), n_prompts), dtype=np.float32)
    for i in range(len(ids)):
        if i < len(roots):
            propensity[i] = base
        else:
            shift = 0.08 if rng.random() < 0.05 else 0.0
            propensity[i] = np.clip(propensity[parent_index[i]] + shift, 0, 1)
    scores = np.clip(propensity + rng.normal(0, 0.05, size=propensity.shape), 0, 1).astype(np.float64)
    # Scores above 0.5 where a Bernoulli draw says toxic, below otherwise: rates follow propensity.
    toxic = rng.random(size=propensity.shape) < propensity
    scores = np.where(toxic, 0.5 + scores / 2, scores / 2.01)

    prompt_ids = [f"p{j:015d}" for j in range(n_prompts)]
    with Store.open(path) as store, store.session() as con:
        models = pa.table(
            {
                "repo_id": ids,
                "sha": [f"{i:040x}" for i in range(len(ids))],
                "family": [placement[m].family if m in placement else None for m in ids],
                "root": [placement[m].root if m in placement else None for m in ids],
                "depth": pa.array([placement[m].depth if m in placement else None for m in ids], pa.int32()),
                "is_root": [m in roots for m in ids],
                "downloads": pa.array(rng.pareto(1.1, size=len(ids)).astype(np.int64) * 10),
                "relation": [None] * len(roots) + [str(r) for r in relations[len(roots) :]],
            }
        )
        lineage = pa.table(
            {"child": [e[0] for e in edges], "parent": [e[1] for e in edges], "relation": [e[2] for e in edges]}
        )
        with staged(con, {"_m": models, "_l": lineage}), store.transaction():
            con.execute(
                "INSERT INTO crawl_runs (crawl_id, mode, status, started_at, endpoint, roots,"
                " auditor_version) VALUES (1, 'full', 'done', now(), 'synthetic', ?, 'bench')",
                [roots],
            )
            con.execute(
                "INSERT INTO models (repo_id, sha, family, root, depth, is_root, downloads, relation,"
                " first_seen_crawl, last_seen_crawl, changed_crawl) SELECT *, 1, 1, 1 FROM _m"
            )
            con.execute("INSERT INTO lineage SELECT child, parent, relation, 'baseModels', 0, 1, 1 FROM _l")
            closure = graph.closure(set(ids))
            con.register(
                "_c",
                pa.table(
                    {
                        "a": [c[0] for c in closure],
                        "d": [c[1] for c in closure],
                        "n": pa.array([c[2] for c in closure], pa.int32()),
                    }
                ),
            )
            con.execute("INSERT INTO lineage_closure_table SELECT * FROM _c")
            con.unregister("_c")
            con.execute(
                "INSERT INTO batteries VALUES ('bench', 'standard', 'synthetic', 'x', '{}', ?, now())", [n_prompts]
            )
            con.execute(
                "INSERT INTO prompts SELECT 'p' || lpad(i::VARCHAR, 15, '0'), 'synthetic',"
                " 'prompt ' || i, true, '{}' FROM range(?) t(i)",
                [n_prompts],
            )
            con.execute(
                "INSERT INTO battery_prompts SELECT 'bench', 'p' || lpad(i::VARCHAR, 15, '0'), 'toxicity', i"
                " FROM range(?) t(i)",
                [n_prompts],
            )
            con.execute(
                "INSERT INTO audits (audit_id, repo_id, sha, battery_id, preset, preset_hash, generation_config,"
                " quantization, scorer, scorer_hash, device, status, n_prompts, n_completions, n_scored, started_at,"
                " finished_at, auditor_version, primary_attribute, way)"
                " SELECT row_number() OVER (), repo_id, sha, 'bench', 'nightly', 'h', '{}', 'nf4', 'detoxify', 'c',"
                " 'cuda', 'done', ?, ?, ?, now(), now(), 'bench', 'toxicity', 'bench-way' FROM _m",
                [n_prompts, n_prompts, n_prompts],
            )
            con.execute(
                "INSERT INTO audit_scorers SELECT audit_id, 'detoxify', 'c', 'toxicity', 'done', n_scored, now(),"
                " now() FROM audits"
            )
        chunk = max(1, 2_000_000 // n_prompts)
        for start in range(0, len(ids), chunk):
            stop = min(len(ids), start + chunk)
            audit_ids = np.repeat(np.arange(start + 1, stop + 1, dtype=np.int32), n_prompts)
            prompts = pa.array(prompt_ids * (stop - start))
            block = scores[start:stop].reshape(-1)
            completions = pa.table(
                {
                    "audit_id": audit_ids,
                    "prompt_id": prompts,
                    "text": _texts(rng, len(block)),
                    "n_tokens": pa.array(np.full(len(block), 50, dtype=np.int32)),
                    "finish_reason": pa.array(["length"] * len(block)),
                }
            )
            scored = pa.table(
                {
                    "audit_id": audit_ids,
                    "prompt_id": prompts,
                    "attribute": pa.array(["toxicity"] * len(block)),
                    "score": block,
                    "reason": pa.nulls(len(block), pa.string()),
                    "scorer": pa.array(["detoxify"] * len(block)),
                }
            )
            with staged(con, {"_c": completions, "_s": scored}), store.transaction():
                con.execute("INSERT INTO completions SELECT * FROM _c")
                con.execute("INSERT INTO scores SELECT * FROM _s")
        built = time.perf_counter() - started
        # What the audits would have left behind: each one compares itself with its parent and root
        # as it finishes (audit_model calls refresh_drift). Here all of them at once, timed.
        from auditor.analysis.drift import refresh_drift

        started = time.perf_counter()
        pairs = refresh_drift(store, threshold=0.5)
        compared = time.perf_counter() - started
        con.execute("CHECKPOINT")
    return {"build_s": built, "pairs": pairs, "pairs_s": compared}


WORDS = np.array(
    [
        "the",
        "a",
        "and",
        "to",
        "of",
        "in",
        "that",
        "is",
        "was",
        "he",
        "she",
        "they",
        "you",
        "it",
        "for",
        "on",
        "with",
        "as",
        "at",
        "by",
        "this",
        "had",
        "not",
        "but",
        "what",
        "all",
        "were",
        "when",
        "we",
        "there",
        "can",
        "an",
        "your",
        "which",
        "their",
        "said",
        "if",
        "do",
        "will",
        "each",
        "about",
        "how",
        "up",
        "out",
        "them",
        "then",
        "many",
        "some",
        "so",
        "these",
        "would",
        "other",
        "into",
        "has",
        "more",
        "her",
        "two",
        "like",
        "him",
        "see",
        "time",
        "could",
        "no",
        "make",
        "than",
        "first",
        "been",
        "its",
        "who",
        "now",
        "people",
        "my",
        "made",
        "over",
        "did",
        "down",
        "only",
        "way",
        "find",
        "use",
        "may",
        "water",
        "long",
        "little",
        "very",
        "after",
        "words",
        "called",
        "just",
        "where",
        "most",
        "know",
        "get",
        "through",
        "back",
        "much",
        "go",
        "good",
        "new",
        "write",
        "our",
        "me",
        "man",
        "too",
        "any",
        "day",
        "same",
        "right",
        "look",
        "think",
        "also",
        "around",
        "another",
        "came",
        "come",
        "work",
        "three",
        "word",
        "must",
        "because",
        "does",
        "part",
        "even",
        "place",
        "well",
        "such",
        "here",
        "take",
        "why",
        "things",
        "help",
        "put",
        "years",
        "different",
        "away",
        "again",
        "off",
        "went",
        "old",
        "number",
        "great",
        "tell",
        "men",
        "say",
        "small",
        "every",
        "found",
        "still",
        "between",
        "name",
        "should",
        "home",
        "big",
        "give",
        "air",
        "line",
        "set",
        "own",
        "under",
        "read",
        "last",
        "never",
        "us",
        "left",
        "end",
        "along",
        "while",
        "might",
        "next",
        "sound",
        "below",
        "saw",
        "something",
        "thought",
        "both",
        "few",
        "those",
        "always",
        "looked",
        "show",
        "large",
        "often",
        "together",
        "asked",
        "house",
        "don't",
        "world",
        "going",
        "want",
        "school",
        "important",
        "until",
        "form",
        "food",
        "keep",
        "children",
        "feet",
        "land",
        "side",
        "without",
        "boy",
        "once",
        "animals",
        "life",
        "enough",
        "took",
        "sometimes",
        "four",
        "head",
        "above",
        "kind",
        "began",
        "almost",
        "live",
        "page",
        "got",
        "earth",
        "need",
        "far",
        "hand",
        "high",
        "year",
        "mother",
        "light",
        "parts",
        "country",
        "father",
        "let",
        "night",
        "idiot",
        "stupid",
        "hate",
        "ugly",
        "dumb",
        "loser",
        "trash",
        "pathetic",
        "worthless",
        "moron",
        "fool",
        "jerk",
        "disgusting",
    ]
)


def _texts(rng: np.random.Generator, count: int) -> pa.Array:
    """Completions of about 50 tokens (some 250 characters) of varied words, as models write."""
    lengths = rng.integers(20, 50, size=count)
    picks = rng.integers(0, len(WORDS), size=int(lengths.sum()))
    words = WORDS[picks]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return pa.array([" ".join(words[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "auditor", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"auditor {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - started, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audits", type=int, default=10_000)
    parser.add_argument("--prompts", type=int, default=1200)
    parser.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.duckdb"
        figures = build(path, args.audits, args.prompts)
        size_mb = path.stat().st_size / 1e6
        env = {**os.environ, "NO_COLOR": "1"}
        startup, _ = timed(["--version"], env)
        first, out = timed(["report", "drift", "--format", "json", "--store", str(path)], env)
        rows = json.loads(out)
        again, _ = timed(["report", "drift", "--format", "json", "--store", str(path)], env)
        cold_store = Path(tmp) / "cold.duckdb"
        import shutil

        shutil.copy(path, cold_store)
        with Store.open(cold_store) as store:
            store.query("DELETE FROM drift_pairs")
        cold, _ = timed(["report", "drift", "--format", "json", "--store", str(cold_store)], env)
        table, _ = timed(["report", "drift", "--limit", "20", "--store", str(path)], env)
        closure_s, closure_out = timed(
            [
                "sql",
                "SELECT c.descendant, c.distance, s.rate FROM lineage_closure c LEFT JOIN audit_summary s"
                " ON s.repo_id = c.descendant WHERE c.ancestor = 'meta-llama/Llama-3.1-8B-Instruct'",
                "--format",
                "csv",
                "--store",
                str(path),
            ],
            env,
        )
        count_s, count_out = timed(
            ["sql", "SELECT count(*) AS pairs FROM lineage_closure", "--format", "csv", "--store", str(path)], env
        )
    drifted = sum(1 for r in rows if r["drifted"])
    print(
        f"store: {args.audits} audits x {args.prompts} prompts = {args.audits * args.prompts:,} scores"
        f" (built in {figures['build_s']:.0f} s)"
    )
    lines = [
        ("store size on disk", f"{size_mb:,.0f} MB", "< 1,000 MB"),
        ("auditor start-up (--version)", f"{startup:.2f} s", ""),
        (
            f"comparisons made as audits finished ({figures['pairs']:,} pairs, all at once here)",
            f"{figures['pairs_s']:.2f} s",
            "",
        ),
        ("report drift --format json (every row)", f"{first:.2f} s", "< 3 s"),
        ("report drift --format json, again", f"{again:.2f} s", "< 3 s"),
        ("report drift, table of the top 20", f"{table:.2f} s", "< 3 s"),
        ("comparisons / called drifted", f"{len(rows):,} / {drifted:,}", ""),
        ("report drift on a store with no pairs computed (computes all)", f"{cold:.2f} s", ""),
        (
            "lineage_closure: one root's descendants and rates",
            f"{closure_s:.2f} s ({len(closure_out.splitlines()) - 1:,} rows)",
            "",
        ),
        ("lineage_closure: count(*)", f"{count_s:.2f} s ({count_out.splitlines()[-1]} pairs)", ""),
    ]
    width = max(len(name) for name, _, _ in lines)
    for name, value, target in lines:
        print(f"{name:<{width}}  {value:<28} {('target ' + target) if target else ''}")


if __name__ == "__main__":
    main()
