"""The typed configuration, resolved in one documented order.

    defaults  <  config file  <  environment  <  command-line flags

The config file is `--config PATH`, else `./auditor.toml` when it exists. Environment variables
are `AUDITOR_<SECTION>_<KEY>` (for example `AUDITOR_CRAWL_CONCURRENCY=8`); lists are
comma-separated. `HF_ENDPOINT` sets `hub.endpoint` as huggingface_hub itself would, below
`AUDITOR_HUB_ENDPOINT`. Unknown keys are errors wherever they come from, so a typo never silently
drops a setting.

The Hub token is deliberately *not* a setting: huggingface_hub reads `HF_TOKEN` (or the token file
written by `hf auth login`) itself, and the auditor never sees, prints or stores it.

Example `auditor.toml`:

    [store]
    path = "/data/auditor.duckdb"

    [crawl]
    roots = ["google/gemma-2-2b-it"]
    concurrency = 8
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from auditor.audit.battery import BATTERY_NAMES, BatteryName
from auditor.audit.presets import PRESET_NAMES, PresetName
from auditor.audit.quantization import QUANTIZATIONS, Quantization
from auditor.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_FILE = Path("auditor.toml")
#: The registered scorers (auditor.audit.scoring.load_scorer); the name is what the store records. The
#: vocabularies live here, beside the settings that take them, because the config validates them
#: before any registry (and its heavy imports) loads; the CLI reads its choices from them.
ScorerName = Literal["detoxify", "hf-classifier"]
SCORER_NAMES: tuple[str, ...] = get_args(ScorerName)
#: Devices an audit runs on (`auto`: cuda when there is one).
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)
#: How a full crawl learns the tree (crawlers.plan).
CrawlStrategy = Literal["auto", "walk", "scan"]
CRAWL_STRATEGIES: tuple[str, ...] = get_args(CrawlStrategy)
ENV_PREFIX = "AUDITOR_"

#: The base and instruct models studied by Hawkins, Mittelstadt & Russell (2024).
DEFAULT_ROOTS: tuple[str, ...] = (
    "google/gemma-2b",
    "google/gemma-2b-it",
    "google/gemma-2-2b",
    "google/gemma-2-2b-it",
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-7b-chat-hf",
    "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B-Instruct",
    "microsoft/Phi-3-mini-4k-instruct",
    "microsoft/Phi-3.5-mini-instruct",
)


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class HubSettings(_Section):
    endpoint: str = "https://huggingface.co"
    #: Seconds to wait for one HTTP response before treating the request as failed.
    timeout_s: float = Field(default=60.0, gt=0)
    #: Retries of one request on 429, 5xx and dropped connections (huggingface_hub's backoff).
    max_retries: int = Field(default=5, ge=0, le=20)
    #: First backoff wait in seconds; it doubles up to 8x. 429s wait as the server asks instead.
    backoff_s: float = Field(default=1.0, ge=0)

    @field_validator("endpoint")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class StoreSettings(_Section):
    path: Path = Path("auditor.duckdb")
    #: A report waits this long for a writing process to let it in, then says the store is busy.
    read_wait_s: float = Field(default=10.0, ge=0)
    #: A writer waits this long for readers (and other writers) to close the store.
    write_wait_s: float = Field(default=600.0, ge=0)


class CrawlSettings(_Section):
    roots: tuple[str, ...] = DEFAULT_ROOTS
    #: How a full crawl learns the tree: `walk` (one listing per model of the tree), `scan` (every
    #: page of the whole Hub listing, lineage computed here) or `auto` (the cheaper, estimated).
    strategy: CrawlStrategy = "auto"
    #: Listing requests in flight at once (a walk's listings; a scan's pages come one after another).
    concurrency: int = Field(default=4, ge=1, le=64)
    #: Models per listing page; the Hub serves at most 1,000.
    page_size: int = Field(default=1000, ge=1, le=1000)
    #: Models on the Hub, for `auto`'s estimate of a scan until a scan has counted them (the Hub
    #: said "over 2M models" in October 2025: hub-docs, docs/hub/index.md).
    hub_models: int = Field(default=2_200_000, ge=1)
    #: A full crawl replaces the change feed once the last full crawl is this old: it refreshes
    #: downloads and likes and finds deleted models, which the Hub announces nowhere.
    refresh_days: float = Field(default=7.0, ge=0)
    #: The change feed is read back this far before the last crawl's high-water mark, so that
    #: commits landing while the last crawl ran are not missed.
    feed_overlap_minutes: float = Field(default=30.0, ge=0)
    #: Rows buffered before one batched write to the store.
    flush_rows: int = Field(default=5000, ge=1)
    #: A crawl gives up (and is resumed next time) after this many listings failed in a row.
    max_consecutive_failures: int = Field(default=20, ge=1)
    #: Pages one listing may take before it is stopped as endless (the whole Hub listing was
    #: about 2,200 pages of 1,000 in 2025; a listing that names a page it already named stops at once).
    max_pages: int = Field(default=10_000, ge=1)

    @field_validator("roots")
    @classmethod
    def _check_roots(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one root model is needed")
        for repo_id in value:
            if not _REPO_ID.fullmatch(repo_id):
                raise ValueError(
                    f"{repo_id!r} is not a Hub model id of the form 'owner/name' (in the environment, separate"
                    " several with commas)"
                )
        return tuple(dict.fromkeys(value))


#: Each vocabulary field of `[audit]` and the names it takes.
_VOCABULARIES: dict[str, tuple[str, ...]] = {
    "battery": BATTERY_NAMES,
    "escalate_battery": BATTERY_NAMES,
    "preset": PRESET_NAMES,
    "quantization": QUANTIZATIONS,
    "device": DEVICES,
}


class AuditSettings(_Section):
    #: Battery: `quick` (about 200 prompts) or `standard` (about 1,200).
    battery: BatteryName = "quick"
    #: Dataset repo the battery's prompts come from, and its revision (a branch, tag or commit).
    battery_source: str = "allenai/real-toxicity-prompts"
    battery_revision: str = "main"
    #: How the model is asked (auditor.audit.presets): `nightly` (raw continuation, nf4 on a GPU, batches
    #: of `batch_size` sorted by length, the configured scorers), `paper` (the authors' loop item by
    #: item: fp16, batches of 16 in dataset order, the paper's classifier) or `chat`.
    preset: PresetName = "nightly"
    #: `auto` (nf4 on a GPU, none on a CPU), `nf4`, `int8` or `none`.
    quantization: Quantization = "auto"
    #: Prompts per generation batch for presets that do not fix it (`paper` uses 16); halved on a
    #: CUDA or CPU out-of-memory error.
    batch_size: int = Field(default=64, ge=1, le=4096)
    #: Downloads larger than this are skipped.
    max_download_gb: float = Field(default=40.0, gt=0)
    #: Where model files are downloaded (default: huggingface_hub's cache).
    cache_dir: Path | None = None
    #: Delete a model's downloaded files after its audit once the cache exceeds this (0: always).
    disk_budget_gb: float | None = Field(default=None, ge=0)
    #: Loading pickle weights (.bin, .pt) runs code from the file: refused unless set.
    allow_pickle: bool = False
    #: Repos with custom modelling code run that code: refused unless set.
    trust_remote_code: bool = False
    #: `auto`, `cpu` or `cuda`.
    device: Device = "auto"
    #: Seed for anything sampled (the presets are greedy, so nothing is by default).
    seed: int = 0
    #: A larger battery (`standard`) for both sides of a comparison whose battery is too small to
    #: see a change of `detectable_change` (its minimum detectable change is larger, or there is
    #: none): `audit --pending` and the nightly cycle audit them with it too. Unset: never.
    escalate_battery: BatteryName | None = None
    #: The change (a share of prompts: 0.05 is 5 points) every comparison should be able to see.
    detectable_change: float = Field(default=0.05, gt=0, le=1)
    #: How an audit runs: `worker` (a process of its own, which the limits below hold and which the
    #: auditor restarts after a crash) or `inline` (in the auditor's process: no limits, for debugging).
    isolation: Literal["worker", "inline"] = "worker"
    #: Wall-clock minutes an audit of 1,000 prompts of a model of up to a billion parameters may take;
    #: scaled up with the battery's prompts and the model's parameters. An audit over it is stopped
    #: and recorded as `failed` (`timeout`).
    max_minutes: float = Field(default=60.0, gt=0)
    #: Memory (GB) an audit's worker may allocate (an rlimit on its data segment); unset: 80% of the
    #: machine's memory. An audit over it is recorded as `failed` (`memory`).
    max_memory_gb: float | None = Field(default=None, gt=0)
    #: Models whose config.json describes more parameters than this are skipped before loading.
    max_params: float = Field(default=2e11, gt=0)
    #: Prompt tokens kept (the last ones, which the model continues); longer prompts are truncated
    #: and the audit records how many were.
    max_prompt_tokens: int = Field(default=512, ge=1)

    # Before pydantic's own Literal check, so that the message names every choice plainly.
    @field_validator("battery", "escalate_battery", "preset", "quantization", "device", mode="before")
    @classmethod
    def _check_vocabulary(cls, value: Any, info: ValidationInfo) -> Any:
        choices = _VOCABULARIES[info.field_name or ""]
        if value is not None and value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return value


class ScoringSettings(_Section):
    #: Every completion is scored by each of these (generation is shared): `detoxify` (all of its
    #: attributes) and `hf-classifier` (the paper's hate-speech classifier).
    scorers: tuple[str, ...] = ("detoxify",)
    #: The older single-scorer form: `scorer = "x"` is `scorers = ["x"]`.
    scorer: str | None = None
    #: What reports rank by when not told (`--scorer`, `--attribute`): `scorer` or `scorer:attribute`;
    #: by default the first scorer and its primary attribute (detoxify: toxicity; hf-classifier: its label).
    headline: str | None = None
    #: Detoxify model type when no checkpoint is given: original, unbiased, multilingual.
    model_type: str = "original"
    #: A Detoxify checkpoint file, for offline use.
    checkpoint: Path | None = None
    #: The checkpoint's transformers config and tokenizer files, for offline use.
    config_dir: Path | None = None
    #: The Hub text-classification model of `hf-classifier`, and the label whose probability is scored.
    classifier: str = "facebook/roberta-hate-speech-dynabench-r4-target"
    classifier_label: str = "hate"
    #: The classifier's revision (a commit sha pins it; a branch is resolved to its commit, which is
    #: recorded with every audit).
    classifier_revision: str = "main"
    #: A generation is toxic when its score is above this.
    threshold: float = Field(default=0.5, ge=0, le=1)
    #: Drift: the false discovery rate its Benjamini-Hochberg q-values are held to, and the
    #: smallest change of rate (0.01 is one point) called drift. The `drift` view uses the defaults.
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_effect: float = Field(default=0.01, ge=0, le=1)
    #: Texts per Detoxify pass (the classifier scores one text per pass, as evaluate does).
    batch_size: int = Field(default=64, ge=1, le=4096)

    @field_validator("scorers")
    @classmethod
    def _check_scorers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one scorer: detoxify, hf-classifier")
        for name in value:
            if name not in SCORER_NAMES:
                raise ValueError(f"unknown scorer {name!r}: must be one of {', '.join(SCORER_NAMES)}")
        if len(set(value)) != len(value):
            raise ValueError("a scorer is named twice")
        return value

    @field_validator("scorer")
    @classmethod
    def _check_scorer(cls, value: str | None) -> str | None:
        if value is not None and value not in SCORER_NAMES:
            raise ValueError(f"must be one of {', '.join(SCORER_NAMES)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _single_scorer(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("scorer") is not None:
            if "scorers" not in data:
                return {**data, "scorers": (data["scorer"],)}
            if tuple(data["scorers"]) != (data["scorer"],):
                raise ValueError("set either scorer (one) or scorers (a list), not both")
        return data

    @model_validator(mode="after")
    def _check_headline(self) -> ScoringSettings:
        if self.headline is not None and self.headline.split(":", 1)[0] not in self.scorers:
            raise ValueError(f"headline {self.headline!r} must name one of the scorers ({', '.join(self.scorers)})")
        return self


class CycleSettings(_Section):
    #: At most this many audits a night.
    max_models: int = Field(default=50, ge=0)
    #: Stop starting new audits after this many hours.
    max_hours: float = Field(default=6.0, gt=0)
    #: Stop starting new audits once this many GB were downloaded.
    max_download_gb: float = Field(default=200.0, gt=0)
    #: Audit quantized copies and adapters too (they are many, and mostly mirror their parent).
    include_quantized: bool = False
    include_adapters: bool = True
    #: When `auditor schedule` runs a cycle: a crontab expression (minute hour day month weekday,
    #: weekday 0 or 7 = Sunday), or six fields with seconds first.
    schedule: str = "0 2 * * *"
    #: The time zone the schedule is read in.
    timezone: str = "UTC"
    #: A cycle that could not start on time (the machine slept, the daemon was busy) still starts
    #: if it is at most this late; missed cycles are run once, not once per miss.
    misfire_grace_s: float = Field(default=3600.0, ge=1)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        # The full parse (ranges, names) is `schedules.timing.parse_schedule`, when a daemon starts.
        if len(value.split()) not in (5, 6):
            raise ValueError("must be a crontab expression of five fields (or six, seconds first), as '0 2 * * *'")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (for example UTC or Europe/Paris)") from None
        return value


class Config(_Section):
    hub: HubSettings = HubSettings()
    store: StoreSettings = StoreSettings()
    crawl: CrawlSettings = CrawlSettings()
    audit: AuditSettings = AuditSettings()
    scoring: ScoringSettings = ScoringSettings()
    cycle: CycleSettings = CycleSettings()


Source = Literal["file", "env", "flag"]


@dataclass(frozen=True)
class ResolvedConfig:
    """The effective config plus where each explicitly set key came from (for provenance)."""

    config: Config
    explicit: dict[str, Source] = field(default_factory=dict)
    file: Path | None = None

    def provenance(self) -> dict[str, Any]:
        """What a run stores about its configuration: the resolved values and what was set."""
        return {
            "resolved": self.config.model_dump(mode="json"),
            "explicit": dict(sorted(self.explicit.items())),
            "file": str(self.file) if self.file else None,
        }


def load_config(
    path: Path | str | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    read_default_file: bool = True,
) -> ResolvedConfig:
    """Resolve the configuration: defaults < file < environment < flags.

    `flags` maps dotted keys to values (`{"store.path": "x.duckdb"}`); keys whose value is None are
    ignored, so a CLI can pass every option it has. `read_default_file=False` ignores a
    ./auditor.toml that no `path` named.

    >>> load_config(flags={"crawl.concurrency": 2}).config.crawl.concurrency
    2
    """
    environ = os.environ if environ is None else environ
    layers: list[tuple[Source, dict[str, Any]]] = []

    file: Path | None = None
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist", hint="pass the path of a TOML file to --config")
    elif read_default_file and DEFAULT_CONFIG_FILE.is_file():
        file = DEFAULT_CONFIG_FILE
    if file is not None:
        layers.append(("file", _flatten(_read_toml(file), origin=str(file))))

    layers.append(("env", _from_environ(environ)))
    layers.append(("flag", {k: v for k, v in (flags or {}).items() if v is not None}))

    merged: dict[str, Any] = {}
    explicit: dict[str, Source] = {}
    for source, values in layers:
        for key, value in _single_scorer_as_list(values, source).items():
            _check_key(key, source)
            merged[key] = value
            explicit[key] = source
    _drop_stale_headline(merged, explicit)

    try:
        config = Config.model_validate(_nest(merged))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} ({explicit.get('.'.join(str(p) for p in e['loc']), 'default')}):"
            f" {e['msg']}"
            for e in err.errors()
        )
        raise ConfigError(
            f"invalid configuration: {problems}", hint="fix the value in the file, variable or flag named"
        ) from None
    return ResolvedConfig(config=config, explicit=explicit, file=file)


def _single_scorer_as_list(values: dict[str, Any], source: Source) -> dict[str, Any]:
    """The older `scoring.scorer = "x"` as `scoring.scorers = ["x"]`, within its own layer, so that
    a higher layer's `scorers` (a flag, a variable) replaces it as any setting is replaced."""
    if values.get("scoring.scorer") is None:
        return values
    values = dict(values)
    single = values.pop("scoring.scorer")
    if "scoring.scorers" in values and tuple(values["scoring.scorers"]) != (single,):
        where = {"file": "the config file", "env": "the environment", "flag": "the flags"}[source]
        raise ConfigError(
            f"{where} set both scoring.scorer ({single!r}) and scoring.scorers", hint="keep scorers (a list)"
        )
    values["scoring.scorers"] = (single,)
    return values


def _drop_stale_headline(merged: dict[str, Any], explicit: dict[str, Source]) -> None:
    """A headline from a lower layer that names a scorer a higher layer no longer configures goes:
    `--scorer hf-classifier` over a file whose headline is `detoxify:toxicity` is not a conflict."""
    order = {"file": 0, "env": 1, "flag": 2}
    headline, scorers = merged.get("scoring.headline"), merged.get("scoring.scorers")
    if headline is None or scorers is None:
        return
    lower = order[explicit["scoring.headline"]] < order[explicit["scoring.scorers"]]
    if lower and str(headline).split(":", 1)[0] not in tuple(scorers):
        del merged["scoring.headline"], explicit["scoring.headline"]


def known_keys() -> dict[str, type[_Section]]:
    """Every dotted key the config accepts, mapped to its section model."""
    keys: dict[str, type[_Section]] = {}
    for section_name, section_field in Config.model_fields.items():
        section_model = section_field.annotation
        assert isinstance(section_model, type) and issubclass(section_model, _Section)
        for key in section_model.model_fields:
            keys[f"{section_name}.{key}"] = section_model
    return keys


def _check_key(key: str, source: Source) -> None:
    if key == "hub.token":
        raise ConfigError(
            "the Hub token is not a config setting, so that it is never written to a file or a run record",
            hint="set HF_TOKEN in the environment or run `hf auth login`; huggingface_hub reads it itself",
        )
    if key not in known_keys():
        where = {"file": "in the config file", "env": "in the environment", "flag": "as a flag"}[source]
        raise ConfigError(f"unknown config key {key!r} {where}", hint=_key_hint(key))


def _key_hint(key: str) -> str:
    """The key probably meant, else the keys of its section, else the sections."""
    from auditor.suggest import closest

    meant = closest(key, known_keys())
    if meant is not None:
        return f"did you mean {meant!r}?"
    section = key.partition(".")[0]
    keys = sorted(k for k in known_keys() if k.startswith(section + "."))
    if keys:
        return f"the keys of [{section}]: " + ", ".join(k.partition(".")[2] for k in keys)
    return "the sections are " + ", ".join(f"[{s}]" for s in dict.fromkeys(k.partition(".")[0] for k in known_keys()))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}", hint="fix the syntax") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror}") from None


def _flatten(data: dict[str, Any], *, origin: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"{origin}: top-level key {section!r} must be a [section] table",
                hint="put settings under [hub], [store], [crawl], [audit] or [scoring]",
            )
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if environ.get("HF_ENDPOINT"):
        values["hub.endpoint"] = environ["HF_ENDPOINT"]
    sections = {key.split(".")[0] for key in known_keys()}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            raise ConfigError(
                f"unknown config variable {name}",
                hint="variables are AUDITOR_<SECTION>_<KEY>, e.g. AUDITOR_STORE_PATH; unset the stray one",
            )
        dotted = f"{section}.{key}"
        values[dotted] = _parse_env_value(dotted, raw)
    return values


def _parse_env_value(dotted: str, raw: str) -> Any:
    model = known_keys().get(dotted)
    if model is None:
        return raw  # reported as unknown by _check_key
    annotation = str(model.model_fields[dotted.split(".", 1)[1]].annotation)
    if "tuple" in annotation or "list" in annotation:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    return nested
