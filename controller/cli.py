"""canaryctl: the command line. Thin: every command calls core or adapter functions.

Exit codes: 0 success; 1 invalid input (lint problems); 2 the target, route or destinations cannot be
resolved (``plan``), or a usage error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from controller import __version__
from controller.adapters.policy_files import check_documents, lint_paths
from controller.adapters.yaml_documents import read_yaml_file
from controller.cli_completion import register as register_completion_command
from controller.cli_control import register as register_control_commands
from controller.cli_dashboard import register as register_dashboard_command
from controller.core.advice import advise
from controller.core.durations import parse_go_duration
from controller.core.plan import Plan, SourceDocument, plan_rollout
from controller.core.policy import policy_json_schema
from controller.core.yaml_text import block_yaml
from controller.errors import TargetError
from controller.runtime.settings_help import settings_help

app = typer.Typer(
    name="canaryctl",
    help="Canary rollouts for TCP services on Istio and Gateway API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(StrEnum):
    """Output formats of plan."""

    yaml = "yaml"
    json = "json"


def _err(line: str) -> None:
    typer.echo(line, err=True)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"canaryctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Canary rollouts for TCP services on Istio and Gateway API."""


@app.command()
def lint(
    paths: Annotated[list[str], typer.Argument(help="Policy files or directories (*.yaml, *.yml).")],
) -> None:
    """Validate policies. One line per problem: FILE:LINE: field.path: message."""
    report = lint_paths(paths)
    for note in report.skipped:
        typer.echo(str(note))
    for finding in report.findings:
        typer.echo(str(finding))
    for loaded in report.policies:
        for advice in advise(loaded.policy):
            _err(f"{loaded.document.where}: warning: {advice}")
    if not report.findings and not report.policies:
        _err(f"no CanaryPolicy documents found in {', '.join(paths)}")
        raise typer.Exit(1)
    if report.findings:
        raise typer.Exit(1)
    count = len(report.policies)
    typer.echo(f"{count} {'policy' if count == 1 else 'policies'} OK")


# PyYAML only for what the fast emitter leaves (dates, bytes...); libyaml's emitter when PyYAML has it.
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _yaml_dump(obj: Any) -> str:
    fast = block_yaml(obj)
    if fast is not None:
        return fast
    return yaml.dump(obj, Dumper=_SafeDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def render_plan_yaml(plan: Plan) -> str:
    """The plan as a YAML stream, each object preceded by a comment naming its step."""
    head = f"{plan.kind} {plan.namespace}/{plan.name}, route {plan.resolved.ref}"
    parts = []
    total = len(plan.steps)
    for number, step in enumerate(plan.steps, start=1):
        parts.append(f"# step {number}/{total}: canary weight {step.weight} ({head})\n{_yaml_dump(step.object)}")
    parts.append(f"# rollback: the original object, restored exactly ({head})\n{_yaml_dump(plan.rollback)}")
    return "---\n".join(parts)


@app.command()
def plan(
    policy: Annotated[Path, typer.Option("--policy", help="Policy file.")],
    target: Annotated[Path, typer.Option("--target", help="YAML file holding the target object.")],
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="yaml or json.")] = OutputFormat.yaml,
    name: Annotated[str | None, typer.Option("--name", help="Policy name, when the file holds several.")] = None,
) -> None:
    """Show every object the controller would write, step by step, and the rollback."""
    documents, findings = read_yaml_file(policy)
    report = check_documents(documents)
    problems = [*findings, *report.findings]
    if problems:
        for finding in problems:
            _err(str(finding))
        raise typer.Exit(1)
    chosen = [p for p in report.policies if name is None or p.policy.metadata.name == name]
    if len(chosen) != 1:
        names = ", ".join(p.policy.metadata.name for p in report.policies) or "none"
        reason = "holds no policy named " + name if name else f"holds {len(chosen)} policies (use --name)"
        _err(f"{policy}: {reason}; policies: {names}")
        raise typer.Exit(1)
    for advice in advise(chosen[0].policy):
        _err(f"{chosen[0].document.where}: warning: {advice}")
    target_docs, target_findings = read_yaml_file(target)
    syntax = [f for f in target_findings if f.path in {"yaml", "(file)"}]
    if syntax:
        for finding in syntax:
            _err(str(finding))
        raise typer.Exit(2)
    sources = [SourceDocument(doc.data, doc.where) for doc in target_docs]
    try:
        result = plan_rollout(chosen[0].policy, sources)
    except TargetError as exc:
        for problem in exc.problems:
            _err(problem if problem.startswith(str(target)) else f"{target}: {problem}")
        raise typer.Exit(2) from None
    if output is OutputFormat.json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(render_plan_yaml(result), nl=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of CanaryPolicy."""
    typer.echo(json.dumps(policy_json_schema(), indent=2))


TIME_FORMS = "RFC 3339 (2026-11-23T10:00:00Z), Unix seconds (1795428000), now, or now-DURATION (now-2h30m)"


def parse_time(text: str, *, now: datetime) -> datetime:
    """RFC 3339 (``2026-11-23T10:00:00Z``), Unix seconds, ``now`` or ``now-1h30m``.

    Raises:
        ValueError: any other text; the message names the accepted forms.
    """
    if text == "now":
        return now
    try:
        if text.startswith("now-"):
            return now - timedelta(seconds=parse_go_duration(text[4:]))
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            pass
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{text!r} is not a time; use {TIME_FORMS}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ReplayFormat(StrEnum):
    """Output formats of replay."""

    text = "text"
    yaml = "yaml"
    json = "json"


REPLAY_UNMEASURED = 3
"""Exit code of a replay that measured nothing: Prometheus cannot be queried, or no data in the window."""


def _sweep_values(text: str) -> tuple[str, list[object]]:
    """``max=0.005,0.01`` -> ("max", [0.005, 0.01]); numbers become numbers, anything else stays text."""
    setting, sep, listed = text.partition("=")
    if not sep or not setting or not listed:
        raise ValueError(f"--sweep {text!r}: expected SETTING=V1,V2,... (for example max=0.005,0.01,0.02)")
    values: list[object] = []
    for raw in listed.split(","):
        item = raw.strip()
        number: object
        try:
            number = int(item)
        except ValueError:
            try:
                number = float(item)
            except ValueError:
                number = item
        values.append(number)
    return setting, values


def _clock(moment: datetime | None) -> str:
    return f"{moment:%H:%M:%S}" if moment is not None else "-"


def _print_replay_text(result: Any) -> None:
    from controller.service.replay import fold_evaluations  # noqa: PLC0415

    document = result.as_dict()
    typer.echo(f"# replay of {document['policy']} from {document['start']} to {document['end']}")
    typer.echo(
        f"outcome: {document['outcome']}"
        + (f" at {document['rolledBackAt']} ({document['reason']})" if document["rolledBackAt"] else "")
    )
    if result.problem is not None:
        typer.echo(f"nothing measured: {result.problem}")
    for step in result.steps:
        recorded = step.recorded_share
        typer.echo(
            f"step {step.index + 1} weight {step.weight}: {step.outcome}"
            + (f" ({step.started_at:%H:%M:%S} - {step.ended_at:%H:%M:%S})" if step.started_at and step.ended_at else "")
            + (
                f"; recorded canary share {recorded['share'] * 100:.1f}% of {recorded['connections']} new connections"
                if recorded is not None
                else ""
            )
        )
        for fold in fold_evaluations(step.evaluations):
            if fold.count == 1:
                typer.echo(f"  {_clock(fold.first.evaluated_at)} {fold.first.verdict}: {fold.first.reason}")
            else:
                span = f"{_clock(fold.first.evaluated_at)}-{_clock(fold.last.evaluated_at)}"
                typer.echo(f"  {span} {fold.first.verdict} x {fold.count}: {fold.first.reason}")


def _print_sweep_text(setting: str, runs: list[Any]) -> None:
    first = runs[0].report
    typer.echo(f"# sweep of {setting} for {first.policy} from {first.start.isoformat()} to {first.end.isoformat()}")
    typer.echo(f"{setting:>14}  {'outcome':<40} {'rolled back at':<14} detection")
    for run in runs:
        report = run.report
        seconds = report.detection_seconds
        outcome = report.outcome if report.problem is None else f"{report.outcome} ({report.problem})"
        typer.echo(
            f"{run.value!s:>14}  {outcome:<40} {_clock(report.rolled_back_at):<14} "
            + (f"{seconds:.0f} s after start" if seconds is not None else "-")
        )
    for run in runs:
        if run.report.rolled_back_at is not None:
            typer.echo(f"# {setting}={run.value}: {run.report.last_verdict}")


@app.command()
def replay(
    policy: Annotated[Path, typer.Option("--policy", help="Policy file (with spec.analysis).")],
    prometheus: Annotated[str, typer.Option("--prometheus", help="Prometheus base URL.")],
    start: Annotated[str, typer.Option("--start", help="RFC 3339, Unix seconds, now or now-2h.")],
    end: Annotated[str, typer.Option("--end", help="RFC 3339, Unix seconds, now or now-1h.")] = "now",
    output: Annotated[
        ReplayFormat, typer.Option("--output", "-o", help="text (a readable report, default), yaml or json.")
    ] = ReplayFormat.text,
    name: Annotated[str | None, typer.Option("--name", help="Policy name, when the file holds several.")] = None,
    tick: Annotated[float, typer.Option("--tick", help="Simulated seconds between passes.")] = 5.0,
    sweep_setting: Annotated[
        str | None,
        typer.Option(
            "--sweep",
            help="Replay once per value of one setting: max=0.005,0.01,0.02 (errors.max with several checks; "
            "also countTest.confidence, minConnections, failureLimit...).",
        ),
    ] = None,
) -> None:
    """Replay a policy's schedule and analysis over recorded history: where would it have rolled back?

    Exit 0 when the replay measured something (whatever the outcome), 1 for an invalid policy or sweep
    value, 2 for bad times or options, 3 when it measured nothing (Prometheus cannot be queried, or no
    data in the window).
    """
    from controller.runtime.composition import replay_metrics  # noqa: PLC0415 - heavy imports, replay only
    from controller.service.replay import replay as run_replay  # noqa: PLC0415
    from controller.service.replay import sweep as run_sweep  # noqa: PLC0415
    from controller.service.replay import with_setting  # noqa: PLC0415

    documents, findings = read_yaml_file(policy)
    report = check_documents(documents)
    if findings or report.findings:
        for finding in [*findings, *report.findings]:
            _err(str(finding))
        raise typer.Exit(1)
    chosen = [p.policy for p in report.policies if name is None or p.policy.metadata.name == name]
    if len(chosen) != 1:
        _err(f"{policy}: holds {len(chosen)} matching policies (use --name)")
        raise typer.Exit(1)
    if chosen[0].spec.analysis is None:
        _err(f"{policy}: the policy has no spec.analysis to replay")
        raise typer.Exit(1)
    now = datetime.now(UTC)
    try:
        begin = parse_time(start, now=now)
    except ValueError as exc:
        _err(f"invalid --start: {exc}")
        raise typer.Exit(2) from None
    try:
        finish = parse_time(end, now=now)
    except ValueError as exc:
        _err(f"invalid --end: {exc}")
        raise typer.Exit(2) from None
    if finish <= begin:
        _err("--end must be after --start")
        raise typer.Exit(2)
    swept: tuple[str, list[object]] | None = None
    if sweep_setting is not None:
        try:
            swept = _sweep_values(sweep_setting)
        except ValueError as exc:
            _err(str(exc))
            raise typer.Exit(2) from None
        try:
            for value in swept[1]:
                with_setting(chosen[0], swept[0], value)
        except ValueError as exc:
            _err(f"--sweep {exc}")
            raise typer.Exit(1) from None
    metrics = replay_metrics(prometheus)
    try:
        if swept is not None:
            runs = run_sweep(
                chosen[0], metrics, setting=swept[0], values=swept[1], start=begin, end=finish, tick_seconds=tick
            )
        else:
            result = run_replay(chosen[0], metrics, start=begin, end=finish, tick_seconds=tick)
    finally:
        metrics.close()
    if swept is not None:
        problems = [run.report.problem for run in runs if run.report.problem is not None]
        document: Any = {"setting": swept[0], "runs": [run.as_dict() for run in runs]}
        if output is ReplayFormat.text:
            _print_sweep_text(swept[0], runs)
    else:
        problems = [result.problem] if result.problem is not None else []
        document = result.as_dict()
        if output is ReplayFormat.text:
            _print_replay_text(result)
    if output is ReplayFormat.json:
        typer.echo(json.dumps(document, indent=2))
    elif output is ReplayFormat.yaml:
        typer.echo(yaml.dump(document, Dumper=_SafeDumper, sort_keys=False, allow_unicode=True), nl=False)
    if problems:
        _err(f"replay measured nothing: {problems[0]}")
        raise typer.Exit(REPLAY_UNMEASURED)


def run() -> None:  # noqa: D103 - the help text is set below, with every setting
    from controller.runtime.composition import run as run_daemon  # noqa: PLC0415 - heavy imports, daemon only

    run_daemon()


run.__doc__ = (
    "Run the controller daemon. Every setting is an environment variable; an invalid one stops it at once, "
    "named.\n\n" + escape(settings_help())
)
app.command(name="run", short_help="Run the controller daemon (settings: CANARY_* environment variables).")(run)


SANDBOX_NOT_INSTALLED = "the sandbox is not installed: pip install ./sandbox (make demo does it)"


def _sandbox_not_installed(command: str, exc: ModuleNotFoundError) -> typer.Exit:
    """Say how to install the sandbox (its own distribution, not in the product) and exit 2.

    Only when ``canary_sandbox`` itself is what is missing: a dependency missing inside an installed sandbox
    is re-raised as it is, since installing the sandbox again would not be the fix.
    """
    if exc.name != "canary_sandbox" and not (exc.name or "").startswith("canary_sandbox."):
        raise exc
    _err(f"canaryctl {command}: {SANDBOX_NOT_INSTALLED}")
    return typer.Exit(2)


class DemoVariant(StrEnum):
    """Route kinds of the demo."""

    istio = "istio"
    gateway_api = "gateway-api"


@app.command()
def demo(
    fault_at: Annotated[
        int | None,
        typer.Option("--fault-at", min=1, max=100, help="Canary weight at which v2 starts refusing connections."),
    ] = None,
    step_seconds: Annotated[float, typer.Option("--step-seconds", min=2, max=600, help="Seconds per step.")] = 10.0,
    variant: Annotated[DemoVariant, typer.Option("--variant", help="VirtualService or Gateway API TCPRoute.")] = (
        DemoVariant.istio
    ),
    rate: Annotated[float, typer.Option("--rate", min=1, max=500, help="Client connections per second.")] = 20.0,
    scrape_seconds: Annotated[
        float, typer.Option("--scrape-seconds", min=0.2, max=30, help="Prometheus scrape interval.")
    ] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON result on stdout; progress lines, no live view, on stderr.")
    ] = False,
    dashboard_port: Annotated[
        int,
        typer.Option(
            "--dashboard-port",
            min=0,
            max=65535,
            help="Serve the web dashboard on this port while the demo runs (another free one when taken).",
        ),
    ] = 3100,
) -> None:
    """Run Istio's TCP traffic shift on this machine with a real Envoy, Prometheus and Alertmanager.

    Prints the policy it runs, then its progress on stderr: a live table on a terminal, otherwise one line per
    phase change and per step. Exit 0 when the outcome is the expected one (promoted; rolled back with
    --fault-at), 1 otherwise, 2 when the sandbox could not start or is not installed.
    """
    import signal  # noqa: PLC0415
    import sys  # noqa: PLC0415

    try:
        from canary_sandbox import demo as sandbox_demo  # noqa: PLC0415 - a separate distribution, demo only
        from canary_sandbox.processes import SandboxError  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise _sandbox_not_installed("demo", exc) from None

    options = sandbox_demo.DemoOptions(
        variant="istio" if variant is DemoVariant.istio else "gateway-api",
        step_seconds=step_seconds,
        fault_at=fault_at,
        rate=rate,
        scrape_seconds=scrape_seconds,
        analysis_seconds=max(scrape_seconds * 2, 1.0),
        dashboard_port=dashboard_port,
    )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM (and SIGINT even when a parent shell ignored it) stop the demo the way Ctrl-C does: cleanly.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        live = not as_json and sys.stderr.isatty()
        with sandbox_demo.progress_view(sys.stderr, live=live) as view:
            result = sandbox_demo.run_demo(
                options,
                on_update=view.update,
                on_policy=view.policy,
                # A YAML comment, as the policy's header is: what precedes the progress lines stays YAML.
                on_dashboard=lambda url: typer.echo(f"# dashboard: {url} (served while the demo runs)", err=True),
            )
    except SandboxError as exc:
        typer.echo(f"canaryctl demo: the sandbox could not start: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("canaryctl demo: interrupted; everything it started is stopped", err=True)
        raise typer.Exit(130) from None
    expected = "rolled_back" if fault_at is not None else "promoted"
    if as_json:
        typer.echo(json.dumps(result.as_json()))
    else:
        typer.echo(_demo_summary(result.as_json(), expected))
    raise typer.Exit(0 if result.outcome == expected else 1)


@app.command()
def sandbox(
    step_seconds: Annotated[
        float, typer.Option("--step-seconds", min=2, max=3600, help="Seconds per step of the sandbox's policy.")
    ] = 30.0,
    variant: Annotated[DemoVariant, typer.Option("--variant", help="VirtualService or Gateway API TCPRoute.")] = (
        DemoVariant.istio
    ),
    rate: Annotated[float, typer.Option("--rate", min=1, max=500, help="Client connections per second.")] = 20.0,
    scrape_seconds: Annotated[
        float, typer.Option("--scrape-seconds", min=0.2, max=30, help="Prometheus scrape interval.")
    ] = 1.0,
) -> None:
    """Keep the demo's world running (API emulator, Envoy, Prometheus, Alertmanager, client) for canaryctl run.

    Prints the kubeconfig, the URLs and the commands to type; Ctrl-C stops it all. Exit 0 when stopped, 2 when
    the sandbox could not start or is not installed.
    """
    import signal  # noqa: PLC0415
    import sys  # noqa: PLC0415

    try:
        from canary_sandbox.demo import DemoOptions  # noqa: PLC0415 - a separate distribution, sandbox only
        from canary_sandbox.processes import SandboxError  # noqa: PLC0415
        from canary_sandbox.session import run_sandbox  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise _sandbox_not_installed("sandbox", exc) from None

    options = DemoOptions(
        variant="istio" if variant is DemoVariant.istio else "gateway-api",
        step_seconds=step_seconds,
        rate=rate,
        scrape_seconds=scrape_seconds,
        analysis_seconds=max(scrape_seconds * 2, 1.0),
    )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_sandbox(options, out=sys.stdout, err=sys.stderr)
    except SandboxError as exc:
        typer.echo(f"canaryctl sandbox: the sandbox could not start: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("canaryctl sandbox: stopped; everything it started is stopped", err=True)


def _demo_summary(result: dict[str, Any], expected: str) -> str:
    lines = ["", f"outcome: {result['outcome']} (expected {expected}) after {result['seconds']} s", ""]
    lines.append(f"{'weight':>6}  {'connections':>11}  {'two':>5}  {'share':>6}  {'prom':>6}  {'errors':>6}  verdict")
    for step in result["steps"]:
        share = "-" if step["observed_canary_share"] is None else f"{step['observed_canary_share']:.1%}"
        measured = step.get("prometheus_canary_share")
        prom = "-" if measured is None else f"{measured:.1%}"
        lines.append(
            f"{step['weight']:>6}  {step['connections']:>11}  {step['canary_replies']:>5}  {share:>6}  {prom:>6}  "
            f"{step['errors']:>6}  {step['verdict'] or '-'}"
        )
    lines.append(
        "(share: the client's count of replies from v2; prom: the controller's traffic-share measure from Envoy's "
        "counters at the step's last check)"
    )
    latency = result["rollback_latency_seconds"]
    if latency:
        lines.append("")
        lines.append(
            f"rollback latency from the first refused connection: route restored in the API {latency['api']} s, "
            f"Envoy without v2 {latency['envoy']} s"
        )
    for alert in result["alerts"]:
        labels = alert["labels"]
        lines.append(
            f"alert in Alertmanager: {labels.get('alertname')} {labels.get('namespace')}/{labels.get('policy')}"
        )
    lines.append("")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    return "\n".join(lines)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


register_control_commands(app)
register_dashboard_command(app)
register_completion_command(app)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
