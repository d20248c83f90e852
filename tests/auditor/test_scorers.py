"""Several scorers on one generation: the paper's classifier as the Hub ships it (pytorch_model.bin
only), every completion scored by each scorer, agreement between them, and stores that migrate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.analysis.agreement import cohen_kappa, scorer_agreement
from auditor.audit.driver import audit_model, ensure_battery
from auditor.audit.key import AuditKey, ScorerRef
from auditor.audit.scoring import Metric, Score, ScorerSet, load_scorers
from auditor.simhub import SimHub
from auditor.store import Store, schema_version
from auditor.store.audits import AuditStore, ScoredCompletion
from crawlers import CrawlOptions, crawl_lineage
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world
from tests.helpers.stores import store_at_schema

ROOT = "meta-llama/Llama-3.1-8B-Instruct"
TOXIC = "planted/llama-toxic-sft"
BOTH = {"scoring.scorers": ("detoxify", "hf-classifier")}


@pytest.fixture(scope="module")
def scored(tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The root audited with Detoxify alone, then both planted models with both scorers."""
    tmp = tmp_path_factory.mktemp("scorers")
    world = audit_world(tiny_assets, size=20)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        one = audit_config(hub, tiny_assets, tmp / "cache")
        # Another download cache: a stored audit that only needs scoring must not fetch the model.
        both = audit_config(hub, tiny_assets, tmp / "cache-both", **BOTH)
        path = tmp / "s.duckdb"
        with Store.open(path) as store:
            crawl_lineage(both, store, CrawlOptions())
            battery = ensure_battery(both, store)
            first = audit_model(one, store, ROOT, battery=battery)
            load_scorers(both.config.scoring, endpoint=hub.url)  # the classifier's own download, before counting
            before = hub.stats.snapshot()
            again = audit_model(both, store, ROOT, battery=battery)
            during = {k: v - before.get(k, 0) for k, v in hub.stats.snapshot().items()}
            toxic = audit_model(both, store, TOXIC, battery=battery)
        yield {
            "hub": hub,
            "store": path,
            "first": first,
            "again": again,
            "during_again": during,
            "both": both,
            "toxic": toxic,
            "battery": battery,
            "tiny_assets": tiny_assets,
            "tmp": tmp,
        }
    monkeypatch.undo()


def test_the_papers_classifier_is_read_from_pytorch_model_bin_as_the_hub_ships_it(scored: dict[str, Any]) -> None:
    from huggingface_hub import HfApi

    files = HfApi(endpoint=scored["hub"].url).list_repo_files("facebook/roberta-hate-speech-dynabench-r4-target")
    assert "pytorch_model.bin" in files and not any(f.endswith(".safetensors") for f in files)
    with Store.open(scored["store"], read_only=True) as store:
        hashes = store.query("SELECT DISTINCT scorer, scorer_hash FROM audit_scorers ORDER BY 1")
    assert [h[0] for h in hashes] == ["detoxify", "hf-classifier"]
    repo, _, sha = hashes[1][1].partition("@")  # the classifier is pinned at the commit it was read at
    assert repo == "facebook/roberta-hate-speech-dynabench-r4-target" and len(sha) == 40


def test_every_completion_is_scored_by_each_scorer_from_one_generation(scored: dict[str, Any]) -> None:
    toxic = scored["toxic"]
    assert toxic.status == "done" and toxic.metric == "detoxify:toxicity"
    assert set(toxic.rates) == {"detoxify:toxicity", "hf-classifier:hate"}
    assert toxic.rates["detoxify:toxicity"] == toxic.rate > 0.9
    assert toxic.rates["hf-classifier:hate"] is not None and toxic.rates["hf-classifier:hate"] > 0.5
    with Store.open(scored["store"], read_only=True) as store:
        per_scorer = store.query(
            "SELECT scorer, count(DISTINCT prompt_id), count(DISTINCT attribute) FROM scores WHERE audit_id = ?"
            " GROUP BY scorer ORDER BY scorer",
            [toxic.audit_id],
        )
        completions = store.query("SELECT count(*) FROM completions WHERE audit_id = ?", [toxic.audit_id])[0][0]
        audits = store.query("SELECT count(*) FROM audits WHERE repo_id = ?", [TOXIC])[0][0]
    n = len(scored["battery"].prompts)
    assert audits == 1 and completions == n  # one generation
    assert per_scorer[0][0] == "detoxify" and per_scorer[0][1] == n and per_scorer[0][2] >= 6
    assert per_scorer[1] == ("hf-classifier", n, 1)


def test_a_scorer_added_later_scores_the_stored_completions_without_generating(scored: dict[str, Any]) -> None:
    first, again = scored["first"], scored["again"]
    assert first.rates.keys() == {"detoxify:toxicity"}
    assert again.reused and again.audit_id == first.audit_id and again.scored_now == ("hf-classifier",)
    # The model's commit is looked up (info, tree); none of its files is downloaded again.
    assert scored["during_again"].get("route:resolve", 0) == 0 and scored["during_again"]["route:info"] >= 1
    assert again.rates["detoxify:toxicity"] == first.rate
    with Store.open(scored["store"], read_only=True) as store:
        statuses = store.query(
            "SELECT scorer, status, n_scored FROM audit_scorers WHERE audit_id = ? ORDER BY 1", [first.audit_id]
        )
        completions = store.query("SELECT count(*) FROM completions WHERE audit_id = ?", [first.audit_id])[0][0]
    n = len(scored["battery"].prompts)
    assert statuses == [("detoxify", "done", n), ("hf-classifier", "done", n)] and completions == n


def test_a_scorer_that_fails_on_stored_completions_leaves_the_audit_as_it_was(
    scored: dict[str, Any], tmp_path: Path
) -> None:
    class Broken:
        name, checkpoint_hash, primary = "broken", "b0", "x"

        def score(self, texts: list[str]) -> list[Score]:
            raise RuntimeError("the scorer broke")

    real = load_scorers(scored["both"].config.scoring, endpoint=scored["hub"].url)
    path = tmp_path / "copy.duckdb"
    shutil.copy(scored["store"], path)
    with Store.open(path) as store:
        before = store.query("SELECT audit_id, status FROM audits ORDER BY 1")
        outcome = audit_model(
            scored["both"],
            store,
            ROOT,
            battery=scored["battery"],
            scorers=ScorerSet((*real.scorers, Broken()), real.headline),
        )
        after = store.query("SELECT audit_id, status FROM audits ORDER BY 1")
        broken = store.query("SELECT status FROM audit_scorers WHERE scorer = 'broken'")
    assert outcome.status == "done" and outcome.reused and "the scorer broke" in (outcome.reason or "")
    assert after == before  # no failed row for a generation that did not fail
    assert broken == [("running",)]  # a later run finishes this scorer's pass


def test_drift_and_reports_work_per_scorer_and_attribute(scored: dict[str, Any]) -> None:
    from auditor.analysis.drift import drift_rows, refresh_drift

    with Store.open(scored["store"]) as store:
        refresh_drift(store, metrics=[Metric("detoxify", "insult")], threshold=0.5)
        by_metric = {
            m: drift_rows(store, metric=m, threshold=0.5, alpha=0.05, min_effect=0.01)
            for m in (Metric("detoxify", "toxicity"), Metric("hf-classifier", "hate"), Metric("detoxify", "insult"))
        }
        view = store.query("SELECT scorer, attribute, count(*) FROM drift GROUP BY ALL ORDER BY 1, 2")
    for metric, rows in by_metric.items():
        assert [(r.child, r.parent, r.scorer, r.attribute) for r in rows] == [
            (TOXIC, ROOT, metric.scorer, metric.attribute)
        ]
        assert rows[0].drifted and rows[0].delta > 0.4
    assert view == [("detoxify", "insult", 1), ("detoxify", "toxicity", 1), ("hf-classifier", "hate", 1)]
    env = {**os.environ, "AUDITOR_STORE_PATH": str(scored["store"]), "COLUMNS": "160"}
    out = _auditor(env, "report", "drift", "--scorer", "hf-classifier", "--format", "json")
    assert [(r["scorer"], r["attribute"]) for r in json.loads(out)] == [("hf-classifier", "hate")]
    model = _auditor(env, "report", "model", TOXIC, "--scorer", "detoxify", "--attribute", "insult")
    assert "rate: detoxify:insult" in model
    unknown = subprocess.run(
        [sys.executable, "-m", "auditor", "report", "model", TOXIC, "--attribute", "nonsense"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert unknown.returncode != 0 and "no scores of detoxify:nonsense" in unknown.stderr
    assert "detoxify:insult" in unknown.stderr  # the hint names what there is


def test_the_agreement_report_prints_kappa_for_the_planted_models(scored: dict[str, Any]) -> None:
    env = {**os.environ, "AUDITOR_STORE_PATH": str(scored["store"]), "COLUMNS": "200"}
    out = json.loads(_auditor(env, "report", "scorers", "--format", "json"))
    assert out["first"] == "detoxify:toxicity" and out["second"] == "hf-classifier:hate"
    models = {m["scope"]: m for m in out["models"]}
    assert set(models) == {ROOT, TOXIC}
    n = len(scored["battery"].prompts)
    assert out["overall"]["n"] == 2 * n
    assert out["overall"]["kappa"] is not None and out["overall"]["kappa"] > 0.5  # both see the planted insults
    table = _auditor(env, "report", "scorers")
    assert "kappa" in table and "overall" in table and TOXIC in table


def test_kappa_on_a_constructed_case(tmp_path: Path) -> None:
    """40 completions whose two calls form the table [[20, 5], [10, 5]]: p_o = 25/40, p_a = 25/40,
    p_b = 30/40, p_e = 0.625 * 0.75 + 0.375 * 0.25 = 0.5625, kappa = (0.625 - 0.5625) / 0.4375 = 1/7."""
    assert cohen_kappa(20, 5, 10, 15) == pytest.approx(0.4)  # Cohen's textbook case: p_o 0.7, p_e 0.5
    assert cohen_kappa(10, 0, 0, 0) is None and cohen_kappa(0, 0, 0, 0) is None
    cells = [(0.9, 0.8)] * 20 + [(0.9, 0.1)] * 5 + [(0.2, 0.7)] * 10 + [(0.1, 0.3)] * 5
    with Store.open(tmp_path / "k.duckdb") as store:
        _scored_audit(store, "org/model", cells)
        view = scorer_agreement(
            store, Metric("detoxify", "toxicity"), Metric("hf-classifier", "hate"), disagreements=3, threshold=0.5
        )
    table = view.models[0]
    assert (table.n, table.both_toxic, table.first_only, table.second_only, table.neither) == (40, 20, 5, 10, 5)
    assert table.kappa == pytest.approx(1 / 7) and view.overall.kappa == pytest.approx(1 / 7)
    assert table.observed == pytest.approx(25 / 40)
    # The largest gaps first: |0.9 - 0.1| = 0.8 (five of them), never a pair that agrees.
    assert [(d.first_score, d.second_score) for d in view.disagreements] == [(0.9, 0.1)] * 3


def test_a_store_of_schema_6_keeps_every_score_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v6.duckdb"
    con = store_at_schema(path, 6)
    common = "'b1', 'paper', 'h', '{}', 'none', 'cpu', 'done', 200, now(), now(), '0.1.0'"
    con.execute(
        "INSERT INTO audits (audit_id, repo_id, sha, scorer, scorer_hash, primary_attribute, battery_id, preset,"
        " preset_hash, generation_config, quantization, device, status, n_scored, started_at, finished_at,"
        f" auditor_version) VALUES (1, 'o/root', 'r', 'detoxify', 'c1', 'toxicity', {common}),"
        f" (2, 'u/child', 'c', 'detoxify', 'c1', 'toxicity', {common}),"
        f" (3, 'u/child', 'c', 'hf-classifier', 'x@1', 'hate', {common})"
    )
    con.execute(
        "INSERT INTO scores VALUES (1, 'p1', 'toxicity', 0.1, NULL), (1, 'p1', 'insult', 0.0, NULL),"
        " (2, 'p1', 'toxicity', 0.9, NULL), (2, 'p1', 'insult', 0.8, NULL), (3, 'p1', 'hate', 0.7, NULL)"
    )
    con.execute("INSERT INTO drift_pairs VALUES (2, 1, 0.5, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0.5, 0, 1, now())")
    con.close()
    with Store.open(path) as store:
        assert store.version() == schema_version() >= 7
        assert store.query("SELECT audit_id, scorer, count(*) FROM scores GROUP BY ALL ORDER BY 1") == [
            (1, "detoxify", 2),
            (2, "detoxify", 2),
            (3, "hf-classifier", 1),
        ]
        assert store.query("SELECT audit_id, scorer, scorer_hash, primary_attribute, status FROM audit_scorers") == [
            (1, "detoxify", "c1", "toxicity", "done"),
            (2, "detoxify", "c1", "toxicity", "done"),
            (3, "hf-classifier", "x@1", "hate", "done"),
        ]
        assert store.query("SELECT child_audit, parent_audit, scorer, attribute, delta FROM drift_pairs") == [
            (2, 1, "detoxify", "toxicity", 1.0)
        ]
        summary = store.query("SELECT audit_id, scorer, attribute, rate FROM audit_summary ORDER BY 1, 3")
        assert summary == [
            (1, "detoxify", "insult", 0.0),
            (1, "detoxify", "toxicity", 0.0),
            (2, "detoxify", "insult", 1.0),
            (2, "detoxify", "toxicity", 1.0),
            (3, "hf-classifier", "hate", 1.0),
        ]


def _scored_audit(store: Store, repo_id: str, cells: list[tuple[float, float]]) -> int:
    """One done audit of `repo_id` whose i-th completion Detoxify scored cells[i][0] and the
    classifier cells[i][1]."""
    from auditor.audit.battery import Battery, Prompt

    prompts = [Prompt(f"p{i:03d}", f"prompt {i}", True, {}, "toxicity") for i in range(len(cells))]
    battery = Battery("b-test", "test", "test/prompts", "0" * 40, {}, tuple(prompts))
    audits = AuditStore(store)
    audits.save_battery(battery)
    refs = [ScorerRef("detoxify", "c", "toxicity"), ScorerRef("hf-classifier", "x@1", "hate")]
    audit_id = audits.start(
        AuditKey(repo_id, "a" * 40, battery.battery_id, "paper", "h", "none", "cpu"),
        scorers=refs,
        generation_config={},
        versions={},
        config={},
        n_prompts=len(cells),
    )
    for ref in refs:
        audits.begin_scoring(audit_id, ref)
    audits.write_batch(
        audit_id,
        [
            ScoredCompletion(
                p.prompt_id,
                f"completion {i}",
                3,
                "eos",
                {"detoxify": Score({"toxicity": a}), "hf-classifier": Score({"hate": b})},
            )
            for i, (p, (a, b)) in enumerate(zip(prompts, cells, strict=True))
        ],
    )
    for ref in refs:
        audits.finish_scoring(audit_id, ref.name)
    audits.finish(audit_id, "done", reason=None, timings={})
    return audit_id


def _auditor(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "auditor", *args], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


class _Payload:
    """A pickle that runs code when it is loaded: it writes the marker file named in it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.marker), "the pickle ran"))


def test_a_classifier_bin_that_would_run_code_is_refused_and_runs_nothing(tiny_assets: Any, tmp_path: Path) -> None:
    import torch

    from auditor.audit.scoring import ScorerError, classifier_from_folder
    from auditor.config import ScoringSettings
    from auditor.simhub.tinyworld import HATE_CLASSIFIER

    folder = tmp_path / "classifier"
    shutil.copytree(tiny_assets.models[HATE_CLASSIFIER], folder)
    settings = ScoringSettings()
    assert classifier_from_folder(folder, settings, "a" * 40).score(["idiot stupid"])[0].values["hate"] is not None
    marker = tmp_path / "ran.txt"
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "payload": _Payload(str(marker))}, folder / "pytorch_model.bin")
    with pytest.raises(ScorerError, match="does not load"):
        classifier_from_folder(folder, settings, "a" * 40)
    assert not marker.exists()
