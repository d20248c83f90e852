"""The ready-to-use crontab line and systemd units in schedules/examples: their syntax, and that
they call the real `auditor` command with options it has."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from auditor.cli import cli
from auditor.config import CycleSettings
from schedules.timing import next_run, parse_schedule

EXAMPLES = Path(__file__).resolve().parents[2] / "schedules" / "examples"
AUDITOR = Path(sys.executable).with_name("auditor")  # the console script of this install


def _check_auditor_call(argv: list[str]) -> str:
    """`argv` runs the installed `auditor` with a subcommand and options it accepts; returns the subcommand."""
    assert Path(argv[0]).name == "auditor", argv
    name, rest = argv[1], argv[2:]
    command = cli.commands.get(name)
    assert command is not None, f"no such command: auditor {name}"
    command.make_context(name, list(rest))  # raises on an unknown option or a bad value
    return name


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((EXAMPLES / name).read_text(encoding="utf-8"))
    return parser


def test_the_crontab_line_runs_one_cycle_nightly_at_two_utc() -> None:
    lines = [
        line for line in (EXAMPLES / "crontab").read_text(encoding="utf-8").splitlines() if line and line[0] != "#"
    ]
    assignments = dict(line.split("=", 1) for line in lines if "=" in line.split()[0])
    jobs = [line for line in lines if "=" not in line.split()[0]]
    assert assignments == {"CRON_TZ": "UTC"} and len(jobs) == 1
    fields = jobs[0].split(maxsplit=5)
    schedule, command = " ".join(fields[:5]), fields[5]
    parse_schedule(schedule, "UTC")
    assert schedule == CycleSettings().schedule  # the same night as the daemon's default
    assert next_run(schedule).hour == 2
    # The command: `cd DIR && AUDITOR ... >> LOG 2>&1`, in sh syntax.
    subprocess.run(["sh", "-n", "-c", command], check=True)
    parts = shlex.split(command)
    auditor_at = next(i for i, part in enumerate(parts) if part.endswith("/auditor"))
    argv = parts[auditor_at:]
    argv = argv[: next(i for i, part in enumerate(argv) if part.startswith((">", "2>")))]
    assert _check_auditor_call(argv) == "run"


@pytest.mark.parametrize(
    ("name", "command"), [("hub-auditor.service", "run"), ("hub-auditor-scheduler.service", "schedule")]
)
def test_the_systemd_services_call_the_real_command(name: str, command: str, tmp_path: Path) -> None:
    unit = _unit(name)
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert _check_auditor_call(argv) == command
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 60
    assert service["Type"] == ("oneshot" if command == "run" else "simple")
    if command == "run":
        assert service["SuccessExitStatus"] == "3"  # another cycle held the lock
    else:
        assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "HF_TOKEN" not in service.get("Environment", "")  # the token lives in the EnvironmentFile
    _verify(tmp_path, name, argv)


def test_the_timer_starts_the_service_nightly_at_two_utc(tmp_path: Path) -> None:
    timer = _unit("hub-auditor.timer")["Timer"]
    assert timer["OnCalendar"] == "*-*-* 02:00:00 UTC" and timer["Persistent"] == "true"
    assert timer["Unit"] == "hub-auditor.service" and (EXAMPLES / timer["Unit"]).exists()
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        out = subprocess.run([analyze, "calendar", timer["OnCalendar"]], capture_output=True, text=True, check=True)
        assert "02:00:00 UTC" in out.stdout
        shutil.copy(EXAMPLES / "hub-auditor.timer", tmp_path / "hub-auditor.timer")
        _verify(tmp_path, "hub-auditor.service", shlex.split(_unit("hub-auditor.service")["Service"]["ExecStart"]))


def _verify(folder: Path, name: str, argv: list[str]) -> None:
    """`systemd-analyze verify` on a copy whose ExecStart names this install's real `auditor`."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the structural checks above still ran
    text = (EXAMPLES / name).read_text(encoding="utf-8").replace(argv[0], str(AUDITOR))
    text = text.replace("User=auditor", "")  # the example's user does not exist on this machine
    (folder / name).write_text(text, encoding="utf-8")
    done = subprocess.run([analyze, "verify", str(folder / name)], capture_output=True, text=True)
    problems = [line for line in done.stderr.splitlines() if name in line or "Command" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_a_bad_auditor_call_is_caught() -> None:
    with pytest.raises(click.UsageError):
        _check_auditor_call(["/x/auditor", "run", "--no-such-option"])
    with pytest.raises(AssertionError):
        _check_auditor_call(["/x/auditor", "nosuchcommand"])
