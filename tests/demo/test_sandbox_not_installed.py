"""``canaryctl demo`` and ``canaryctl sandbox`` without the sandbox distribution: a clear message, exit 2.

The sandbox (``canary_sandbox``, ``sandbox/`` in this repository) is not part of the controller's wheel or
image; where it is not installed, both commands say how to install it instead of a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from controller.cli import app


@pytest.fixture
def without_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import canary_sandbox`` fail as it does where the distribution is not installed."""
    for name in [name for name in sys.modules if name == "canary_sandbox" or name.startswith("canary_sandbox.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "canary_sandbox", None)


@pytest.mark.usefixtures("without_sandbox")
@pytest.mark.parametrize("command", ["demo", "sandbox"])
def test_says_how_to_install_the_sandbox_when_it_is_not_installed(command: str) -> None:
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"canaryctl {command}: the sandbox is not installed: pip install ./sandbox (make demo does it)" in (
        result.stderr
    )
    assert "Traceback" not in result.output


def test_a_missing_dependency_inside_the_sandbox_is_not_reported_as_a_missing_sandbox() -> None:
    # In a child process: importing half of the sandbox here would leave this session's modules half-replaced.
    script = (
        "import sys; sys.modules['jsonschema'] = None; sys.argv = ['canaryctl', 'demo']; "
        "from controller.cli import main; main()"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "ModuleNotFoundError: import of jsonschema halted" in done.stderr
    assert "the sandbox is not installed" not in done.stderr
