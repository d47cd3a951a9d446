"""canaryctl --version, and canaryctl run --help listing every setting with its default."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from controller import __version__
from controller.cli import app
from controller.runtime.settings_help import settings_reference
from controller.settings import Settings
from tests.support.paths import REPO

runner = CliRunner()


def flat(text: str) -> str:
    """Help text without rich's box drawing and line wrapping: one line, single spaces."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_version_option_prints_the_version_and_exits_0() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"canaryctl {__version__}\n"


def test_the_version_command_still_prints_the_bare_version() -> None:
    assert runner.invoke(app, ["version"]).stdout == f"{__version__}\n"


def test_the_version_is_the_package_metadata_written_once_in_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert __version__ == version("canary-controller") == project["version"]


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_run_help_lists_every_setting_with_its_default(name: str) -> None:
    shown = next(s for s in settings_reference() if s.env == f"CANARY_{name.upper()}")
    text = flat(runner.invoke(app, ["run", "--help"], env={"COLUMNS": "100"}).stdout)
    assert f"{shown.env} (default: {shown.default}):" in text


def test_defaults_are_shown_as_people_write_them() -> None:
    shown = {s.env: s.default for s in settings_reference()}
    assert shown["CANARY_NAMESPACE"] == "canary-system"
    assert shown["CANARY_TICK_SECONDS"] == "5"
    assert shown["CANARY_PROMETHEUS_URL"] == "unset"
    assert shown["CANARY_WATCH_CRDS"] == "true"
    assert shown["CANARY_WATCH_NAMESPACES"] == "empty"
    assert shown["CANARY_LOG_LEVEL"] == "INFO"


def test_run_help_keeps_json_examples_intact() -> None:
    text = flat(runner.invoke(app, ["run", "--help"], env={"COLUMNS": "100"}).stdout)
    assert '[{"name": "oncall", "alertmanager": {"url": "http://alertmanager:9093"}}]' in text
