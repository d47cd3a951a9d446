"""canaryctl's manual control (pause, resume, promote, abort, retry) and status commands.

``register(app)`` adds them to the main ``canaryctl`` app. Thin: the adapters find the policies and record the
commands (``controller.adapters.kubernetes.control``), ``controller.core.status_view`` computes what is shown.

Exit codes: 0 success; 1 no such policy, a command the controller would refuse in the rollout's current phase
(nothing is recorded), RBAC forbids the call, the API server cannot be reached or no Kubernetes configuration
can be loaded; 2 a usage error.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from time import sleep
from typing import Annotated

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.control import (
    DEFAULT_CONTROLLER_NAMESPACE,
    close_kube_api,
    list_statuses,
    namespace_exists,
    record_command,
    server_url,
    status_rows,
)
from controller.cli_completion import complete_policy_names
from controller.core.status import CommandKind, Phase
from controller.core.status_view import (
    TABLE_HEADERS,
    CommandPreview,
    StatusRow,
    pending_commands,
    plain_table,
    preview_command,
    status_list_document,
    table_cells,
)
from controller.errors import CanaryError, UnavailableError

NO_POLICIES = "No canary policies found."
CONTROL_PANEL = "Manual control"

KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        metavar="PATH",
        help="Kubeconfig file. Default: KUBECONFIG, else ~/.kube/config, else the in-cluster service account.",
    ),
]
ContextOption = Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")]
NamespaceOption = Annotated[str, typer.Option("--namespace", "-n", help="The policy's namespace.")]
ControllerNamespaceOption = Annotated[
    str,
    typer.Option(
        "--controller-namespace",
        envvar="CANARY_NAMESPACE",
        help="The controller's namespace, where file-mode policies keep their status ConfigMaps.",
    ),
]

_COMMAND_HELP = {
    CommandKind.PAUSE: "Pause a Pending or Progressing rollout: the weight stays where it is and the step's clock "
    "stops until resume.",
    CommandKind.RESUME: "Resume a Paused rollout: the step's clock continues where it stopped (after drift, the "
    "step's weight is written again).",
    CommandKind.PROMOTE: "Promote a started rollout: jump to the last step now, without waiting for the remaining "
    "steps (a schedule ending below 100, waiting at its last weight, finishes as Promoted).",
    CommandKind.ABORT: "Abort the rollout: restore the original route exactly; the run ends as Aborted.",
    CommandKind.RETRY: "Retry: start a new run of a rollout that ended RolledBack, Failed or Aborted.",
}
_COMMAND_EPILOG = (
    "A command the rollout's current phase does not allow (pause on a RolledBack rollout, promote on a Promoted "
    "one) is refused here, with the reason, and exits 1: nothing is recorded. Otherwise it is recorded in the "
    "canaryctl.dev/commands annotation of the CanaryPolicy resource NS/NAME or, for a policy file, of its status "
    "ConfigMap in the controller's namespace, and canaryctl says what will happen. The controller applies it on "
    "its next pass, or refuses it (an event and a history entry say why) when the phase changed meanwhile: see "
    "canaryctl status."
)


class StatusFormat(StrEnum):
    """Output formats of status."""

    table = "table"
    json = "json"


def _err(line: str) -> None:
    typer.echo(line, err=True)


def local_user() -> str | None:
    """Who runs the command: ``$USER``, else the login name, else None."""
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser() or None
    except (OSError, KeyError):
        return None


def _fail(exc: CanaryError, api: KubeApi | None) -> typer.Exit:
    if isinstance(exc, UnavailableError) and api is not None:
        trouble = "cannot reach the Kubernetes API server" if exc.code == 0 else "the Kubernetes API server failed"
        for problem in exc.problems:
            _err(f"{trouble} at {server_url(api)}: {problem}")
    else:
        for problem in exc.problems:
            _err(problem)
    return typer.Exit(1)


@contextmanager
def _kube(kubeconfig: str | None, context: str | None) -> Iterator[KubeApi]:
    """The API for one command, closed when it ends; the project's errors become messages and exit 1."""
    from controller.runtime.composition import open_kube_api  # noqa: PLC0415 - heavy imports, API commands only

    try:
        api = open_kube_api(kubeconfig=kubeconfig, context=context)
    except CanaryError as exc:
        raise _fail(exc, None) from None
    try:
        yield api
    except CanaryError as exc:
        raise _fail(exc, api) from None
    finally:
        close_kube_api(api)


# -- pause, resume, promote, abort, retry ------------------------------------------------------------------


def _preview(
    api: KubeApi, kind: CommandKind, *, namespace: str, name: str, controller_namespace: str
) -> CommandPreview | None:
    """What the controller will do with the command, from the status the command will be recorded beside
    (the resource's, else the file-mode one's); None when the policy is not found (recording says so)."""
    listing = list_statuses(api, namespace=namespace, name=name, controller_namespace=controller_namespace)
    found = {stored.source: stored for stored in listing.statuses}
    stored = found.get("crd") or found.get("file")
    if stored is None:
        return None
    return preview_command(kind, stored.status, pending_commands(stored.commands, stored.status))


def _control_command(kind: CommandKind) -> Callable[..., None]:
    def command(
        name: Annotated[
            str, typer.Argument(metavar="NAME", help="The CanaryPolicy's name.", autocompletion=complete_policy_names)
        ],
        namespace: NamespaceOption = "default",
        by: Annotated[
            str | None, typer.Option("--by", help="Who asks, recorded with the command. Default: $USER.")
        ] = None,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
        controller_namespace: ControllerNamespaceOption = DEFAULT_CONTROLLER_NAMESPACE,
    ) -> None:
        with _kube(kubeconfig, context) as api:
            preview = _preview(api, kind, namespace=namespace, name=name, controller_namespace=controller_namespace)
            if preview is not None and not preview.accepted:
                _err(f"{kind} refused for CanaryPolicy {namespace}/{name}: {preview.says}; nothing recorded")
                raise typer.Exit(1)
            recorded = record_command(
                api,
                namespace=namespace,
                name=name,
                kind=kind,
                by=by or local_user(),
                controller_namespace=controller_namespace,
            )
        location = recorded.location
        mode = "" if location.ref.source == "crd" else f" (file mode, {location.where})"
        typer.echo(
            f"{kind} recorded for CanaryPolicy {namespace}/{name}{mode} (id {recorded.command.id}); "
            "the controller applies it on its next pass" + (f": {preview.says}" if preview is not None else "")
        )

    command.__doc__ = f"{_COMMAND_HELP[kind]}\n\n{_COMMAND_EPILOG}"
    command.__name__ = str(kind)
    return command


# -- status ------------------------------------------------------------------------------------------------

_PHASE_STYLES = {
    Phase.PENDING: "blue",
    Phase.PROGRESSING: "cyan",
    Phase.PAUSED: "yellow",
    Phase.PROMOTED: "green",
    Phase.ROLLING_BACK: "bold red",
    Phase.ROLLED_BACK: "red",
    Phase.FAILED: "bold red",
    Phase.ABORTED: "magenta",
}


REASON_MIN_WIDTH = 32


def _styled_cells(row: StatusRow) -> list[Text]:
    cells = [Text(cell) for cell in table_cells(row)]
    if row.phase is not None:
        cells[3].stylize(_PHASE_STYLES.get(row.phase, ""))
    if row.last_error or row.stall is not None:
        cells[8].stylize("red" if row.last_error else "yellow")
    return cells


def rich_table(rows: list[StatusRow], *, with_reason: bool = True) -> Table:
    """The status table for a terminal (cells are plain text, never rich markup).

    Nothing is cut: a cell too wide for the terminal folds onto more lines; REASON takes the room left.
    """
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    headers = TABLE_HEADERS if with_reason else TABLE_HEADERS[:-1]
    for header in headers:
        table.add_column(header, overflow="fold", ratio=1 if header == "REASON" else None)
    for row in rows:
        cells = _styled_cells(row)
        table.add_row(*(cells if with_reason else cells[:-1]))
    return table


def rich_status(rows: list[StatusRow], console: Console) -> RenderableType:
    """The table with its REASON column when the terminal leaves that column room enough; else the table
    without it, and each policy's reason below it, wrapped to the terminal's width: never cut."""
    short = rich_table(rows, with_reason=False)
    needed = Measurement.get(console, console.options, short).maximum
    if console.width - needed >= REASON_MIN_WIDTH:
        return rich_table(rows)
    reasons: list[RenderableType] = []
    for row in rows:
        line = Text(f"{row.namespace}/{row.name}", style="bold")
        if len({r.source for r in rows if (r.namespace, r.name) == (row.namespace, row.name)}) > 1:
            line.append(f" ({row.source})")
        line.append(": ")
        line.append(_styled_cells(row)[-1])
        reasons.append(line)
    return Group(short, Text("REASON", style="bold"), *reasons)


class _Status:
    """One ``canaryctl status`` invocation: fetching rows, and printing them once or on every refresh."""

    def __init__(
        self,
        api: KubeApi,
        *,
        name: str | None,
        namespace: str | None,
        controller_namespace: str,
        output: StatusFormat,
    ) -> None:
        self.api = api
        self.name = name
        self.namespace = namespace
        self.controller_namespace = controller_namespace
        self.output = output
        self.console = Console()
        self.warned: set[str] = set()
        self.namespace_checked: str | None = None  # "" once checked and fine

    def fetch(self) -> list[StatusRow]:
        """The rows now; warnings go to stderr once each. Raises CanaryError, or exits 1 when NAME is missing."""
        listing = list_statuses(
            self.api, namespace=self.namespace, name=self.name, controller_namespace=self.controller_namespace
        )
        for warning in listing.warnings:
            if warning not in self.warned:
                self.warned.add(warning)
                _err(f"warning: {warning}")
        rows = status_rows(listing, now=datetime.now(UTC))
        problem = self._store_problem()
        if problem is not None and rows and problem not in self.warned:
            self.warned.add(problem)
            _err(f"warning: {problem}")
        if problem is not None and not rows:
            # Not "no policies": file-mode policies may exist that the controller cannot keep a status for.
            _err(f"error: {problem}")
            raise typer.Exit(1)
        if self.name and not rows:
            where = f"CanaryPolicy {self.namespace}/{self.name}" if self.namespace else f"CanaryPolicy {self.name}"
            scope = "" if self.namespace else " in any namespace"
            _err(
                f"no {where}{scope} (neither a resource nor a file-mode status in namespace "
                f"{self.controller_namespace})"
            )
            raise typer.Exit(1)
        return rows

    def _store_problem(self) -> str | None:
        """Why the controller cannot write file-mode statuses in its namespace (it does not exist), once per run."""
        if self.namespace_checked is None:
            exists = namespace_exists(self.api, self.controller_namespace)
            self.namespace_checked = (
                f"namespace {self.controller_namespace} does not exist, so the controller cannot keep the status "
                "of file-mode policies (nor its leader-election Lease) there: create it, or point "
                "--controller-namespace (CANARY_NAMESPACE) at the controller's namespace"
                if exists is False
                else ""
            )
        return self.namespace_checked or None

    def empty_message(self) -> str:
        """What to say when no policy was found: where else there are some, when there are."""
        if self.namespace is None or self.name is not None:
            return NO_POLICIES
        try:
            others = list_statuses(self.api, namespace=None, controller_namespace=self.controller_namespace)
        except CanaryError:  # e.g. RBAC allows this namespace only: nothing more to say
            return NO_POLICIES
        namespaces = sorted({stored.namespace for stored in others.statuses})
        if not namespaces:
            return NO_POLICIES
        count = len(others.statuses)
        shown = ", ".join(namespaces[:5]) + (f" and {len(namespaces) - 5} more" if len(namespaces) > 5 else "")
        return (
            f"No canary policies found in namespace {self.namespace}; {count} in other namespaces ({shown}): "
            "canaryctl status -A lists them."
        )

    def json_text(self, rows: list[StatusRow], *, indent: int | None) -> str:
        """The JSON document (one line when ``indent`` is None)."""
        return json.dumps(status_list_document(rows), indent=indent, ensure_ascii=False)

    def renderable(self, rows: list[StatusRow]) -> RenderableType:
        """What a terminal shows for ``rows``."""
        return rich_status(rows, self.console) if rows else Text(self.empty_message())

    def print_once(self, rows: list[StatusRow]) -> None:
        """Print the rows as JSON, a rich table (terminal) or an aligned plain table."""
        if self.output is StatusFormat.json:
            typer.echo(self.json_text(rows, indent=2))
            if not rows and (hint := self.empty_message()) != NO_POLICIES:
                _err(hint)
        elif not rows:
            typer.echo(self.empty_message())
        elif self.console.is_terminal:
            self.console.print(rich_status(rows, self.console))
        else:
            typer.echo(plain_table(TABLE_HEADERS, (table_cells(row) for row in rows)), nl=False)

    def watch(self, *, interval: float, max_refreshes: int | None) -> None:
        """Refresh every ``interval`` seconds until Ctrl-C (or ``max_refreshes``, for tests).

        A failed refresh after the first is reported and the watch goes on: the API server may come back.
        """
        refreshes = 0

        def more() -> bool:
            nonlocal refreshes
            refreshes += 1
            if max_refreshes is not None and refreshes >= max_refreshes:
                return False
            sleep(interval)
            return True

        def attempt() -> list[StatusRow] | str:
            try:
                return self.fetch()
            except CanaryError as exc:
                if refreshes == 0:
                    raise
                return "; ".join(exc.problems)

        try:
            if self.output is StatusFormat.json:
                while True:
                    result = attempt()
                    if isinstance(result, str):
                        _err(f"refresh failed: {result}")
                    else:
                        typer.echo(self.json_text(result, indent=None))
                    if not more():
                        return
            elif self.console.is_terminal:
                self._watch_live(attempt, more, interval)
            else:
                while True:
                    result = attempt()
                    if isinstance(result, str):
                        _err(f"refresh failed: {result}")
                    else:
                        self.print_once(result)
                        typer.echo("")
                    if not more():
                        return
        except KeyboardInterrupt:
            return

    def _watch_live(
        self, attempt: Callable[[], list[StatusRow] | str], more: Callable[[], bool], interval: float
    ) -> None:
        shown: RenderableType = Text("")
        with Live(shown, console=self.console, auto_refresh=False, transient=False) as live:
            while True:
                result = attempt()
                stamp = datetime.now(UTC).strftime("%H:%M:%S UTC")
                if isinstance(result, str):
                    footer = Text(f"{stamp}: refresh failed: {result}", style="red")
                else:
                    shown = self.renderable(result)
                    footer = Text(f"{stamp}, every {interval:g}s; Ctrl-C to stop", style="dim")
                live.update(Group(shown, footer), refresh=True)
                if not more():
                    return


def status(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Only this policy.", autocompletion=complete_policy_names)
    ] = None,
    namespace: NamespaceOption = "default",
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Policies of every namespace (overrides -n).")
    ] = False,
    output: Annotated[
        StatusFormat, typer.Option("--output", "-o", help="table, or json (one StatusList document).")
    ] = StatusFormat.table,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="Refresh until Ctrl-C (with -o json: one JSON document per line)."),
    ] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.01, help="Seconds between refreshes.")] = 2.0,
    max_refreshes: Annotated[int | None, typer.Option("--max-refreshes", min=1, hidden=True)] = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    controller_namespace: ControllerNamespaceOption = DEFAULT_CONTROLLER_NAMESPACE,
) -> None:
    """Show the rollouts: CanaryPolicy resources and file-mode policies, their phase, step, weight and errors.

    Columns: NAMESPACE, NAME, SOURCE (crd or file), PHASE (with commands not yet applied, e.g.
    "Progressing (pause pending)"), STEP, WEIGHT, IN STEP (time at the current step; frozen while paused),
    VERDICT (the last analysis's verdict), REASON (why the rollout is where it is, e.g. what holds its step,
    then the last analysis when it did not pass and the last error; in full, never cut). -o json has every
    field apart, the short stall reason too.
    """
    with _kube(kubeconfig, context) as api:
        view = _Status(
            api,
            name=name,
            namespace=None if all_namespaces else namespace,
            controller_namespace=controller_namespace,
            output=output,
        )
        if watch:
            view.watch(interval=interval, max_refreshes=max_refreshes)
        else:
            view.print_once(view.fetch())


def register(app: typer.Typer) -> None:
    """Add pause, resume, promote, abort, retry and status to ``app``."""
    for kind in CommandKind:
        app.command(name=str(kind), rich_help_panel=CONTROL_PANEL)(_control_command(kind))
    app.command(name="status", rich_help_panel=CONTROL_PANEL)(status)
