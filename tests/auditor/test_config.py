"""Configuration: defaults < file < environment < flags; unknown keys are errors; no token."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.config import DEFAULT_ROOTS, load_config
from auditor.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_papers_roots_and_a_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = load_config(environ={})
    assert resolved.config.crawl.roots == DEFAULT_ROOTS
    assert len(DEFAULT_ROOTS) == 10
    assert resolved.config.store.path == Path("auditor.duckdb")
    assert resolved.config.hub.endpoint == "https://huggingface.co"
    assert resolved.explicit == {} and resolved.file is None


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    config = _write(tmp_path / "a.toml", '[crawl]\nconcurrency = 2\nrefresh_days = 3\n[store]\npath = "f.duckdb"\n')
    env = {"AUDITOR_CRAWL_CONCURRENCY": "5", "AUDITOR_STORE_PATH": "e.duckdb"}
    resolved = load_config(config, environ=env, flags={"store.path": "x.duckdb", "crawl.roots": None})
    assert resolved.config.crawl.refresh_days == 3  # file
    assert resolved.config.crawl.concurrency == 5  # env over file
    assert resolved.config.store.path == Path("x.duckdb")  # flag over env
    assert resolved.explicit == {"crawl.concurrency": "env", "crawl.refresh_days": "file", "store.path": "flag"}
    provenance = resolved.provenance()
    assert provenance["resolved"]["crawl"]["concurrency"] == 5 and provenance["file"] == str(config)


def test_auditor_toml_in_the_working_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "auditor.toml", '[crawl]\nroots = ["google/gemma-2-2b-it"]\n')
    assert load_config(environ={}).config.crawl.roots == ("google/gemma-2-2b-it",)


def test_hf_endpoint_is_honoured_below_the_auditor_variable() -> None:
    assert load_config(environ={"HF_ENDPOINT": "http://127.0.0.1:9/"}).config.hub.endpoint == "http://127.0.0.1:9"
    both = {"HF_ENDPOINT": "http://a:1", "AUDITOR_HUB_ENDPOINT": "http://b:2"}
    assert load_config(environ=both).config.hub.endpoint == "http://b:2"


def test_lists_from_the_environment_are_comma_separated() -> None:
    env = {"AUDITOR_CRAWL_ROOTS": "google/gemma-2b, microsoft/Phi-3-mini-4k-instruct"}
    assert load_config(environ=env).config.crawl.roots == ("google/gemma-2b", "microsoft/Phi-3-mini-4k-instruct")


@pytest.mark.parametrize(
    ("toml", "env", "flags", "message"),
    [
        ("[crawl]\nconcurency = 2\n", {}, {}, "unknown config key 'crawl.concurency' in the config file"),
        ("", {"AUDITOR_CRAWL_CONCURENCY": "2"}, {}, "unknown config key 'crawl.concurency' in the environment"),
        ("", {"AUDITOR_NOPE": "1"}, {}, "unknown config variable AUDITOR_NOPE"),
        ("", {}, {"crawl.nope": 1}, "unknown config key 'crawl.nope' as a flag"),
        ("[hub]\ntoken = 'hf_secret'\n", {}, {}, "the Hub token is not a config setting"),
        ("roots = 1\n", {}, {}, "must be a [section] table"),
        ("[crawl]\nconcurrency = 0\n", {}, {}, "crawl.concurrency (file)"),
        ("[crawl]\nroots = ['not-an-id']\n", {}, {}, "not a Hub model id"),
        ("[crawl\n", {}, {}, "is not valid TOML"),
    ],
)
def test_bad_settings_say_what_and_where(
    tmp_path: Path, toml: str, env: dict[str, str], flags: dict[str, object], message: str
) -> None:
    config = _write(tmp_path / "c.toml", toml)
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ=env, flags=flags)
    assert message in str(caught.value)
    assert caught.value.hint
    assert "hf_secret" not in str(caught.value) + caught.value.hint


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_scorers_follow_the_layer_order_even_in_the_older_single_form(tmp_path: Path) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text('[scoring]\nscorer = "detoxify"\nheadline = "detoxify:toxicity"\n')
    from_file = load_config(path, environ={}).config.scoring
    assert from_file.scorers == ("detoxify",) and from_file.headline == "detoxify:toxicity"
    # A variable or a flag replaces the file's scorer; the file's headline, naming a scorer no longer
    # configured, goes with it rather than making the configuration invalid.
    env = load_config(path, environ={"AUDITOR_SCORING_SCORERS": "hf-classifier"})
    assert env.config.scoring.scorers == ("hf-classifier",) and env.config.scoring.headline is None
    assert env.explicit["scoring.scorers"] == "env"
    both = load_config(path, environ={}, flags={"scoring.scorers": ("detoxify", "hf-classifier")}).config.scoring
    assert both.scorers == ("detoxify", "hf-classifier") and both.headline == "detoxify:toxicity"
    path.write_text('[scoring]\nscorer = "detoxify"\nscorers = ["hf-classifier"]\n')
    with pytest.raises(ConfigError, match=r"both scoring\.scorer"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="unknown scorer 'perspective'"):
        load_config(flags={"scoring.scorers": ("perspective",)}, environ={}, read_default_file=False)


@pytest.mark.parametrize(
    ("toml", "hint"),
    [
        ("[audit]\nbatery = 'quick'\n", "did you mean 'audit.battery'?"),
        ("[hub]\nendpont = 'x'\n", "did you mean 'hub.endpoint'?"),
        ("[cycle]\nzzz = 1\n", "the keys of [cycle]: "),
        ("[nothing]\nzzz = 1\n", "the sections are [hub], [store], [crawl]"),
    ],
)
def test_an_unknown_key_names_the_one_probably_meant(tmp_path: Path, toml: str, hint: str) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.hint is not None and caught.value.hint.startswith(hint), caught.value.hint
    assert "known keys" not in caught.value.hint  # one name, or one section's, never all 47
