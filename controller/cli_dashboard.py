"""``canaryctl dashboard``: the web dashboard on this machine, over the user's own kubeconfig.

Thin: the composition root builds the server (``controller.runtime.composition.open_dashboard``); this
prints its URL and serves until Ctrl-C. Exit codes: 0 after Ctrl-C; 1 no Kubernetes configuration or the
port is taken; 2 a usage error.
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Annotated

import typer

from controller.adapters.kubernetes.control import DEFAULT_CONTROLLER_NAMESPACE
from controller.cli_control import ContextOption, ControllerNamespaceOption, KubeconfigOption, local_user
from controller.errors import CanaryError


def dashboard(
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0: any free one).")] = 3100,
    address: Annotated[
        str, typer.Option("--address", help="Address to listen on. Only this machine by default.")
    ] = "127.0.0.1",
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Show this namespace (repeatable). Default: every namespace."),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Every namespace (the default; overrides -n).")
    ] = False,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            metavar="URL",
            help="Prometheus for the check charts (e.g. a port-forward). Default: each policy's own URL.",
        ),
    ] = None,
    policies: Annotated[
        Path | None,
        typer.Option(
            "--policies",
            metavar="DIR",
            exists=True,
            file_okay=False,
            help="The policy files of file-mode rollouts (CANARY_POLICY_DIR), for their plan and charts.",
        ),
    ] = None,
    tick: Annotated[float, typer.Option("--tick", min=0.1, help="Seconds between live updates.")] = 2.0,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    controller_namespace: ControllerNamespaceOption = DEFAULT_CONTROLLER_NAMESPACE,
) -> None:
    """Serve the web dashboard: every rollout, and one page per rollout explaining it.

    Reads with your kubeconfig (your RBAC applies); pause, resume, promote, abort and retry work from the
    page behind a confirmation, recorded as by `canaryctl pause` etc. with your user name. Listens on
    127.0.0.1:3100 unless told otherwise; prints the URL; Ctrl-C stops it. docs/dashboard.md has the API.
    """
    from controller.runtime.composition import open_dashboard  # noqa: PLC0415 - heavy imports, this command only

    namespaces = None if all_namespaces or not namespace else list(namespace)
    user = local_user()
    try:
        server = open_dashboard(
            kubeconfig=kubeconfig,
            context=context,
            namespaces=namespaces,
            prometheus_url=prometheus,
            controller_namespace=controller_namespace,
            host=address,
            port=port,
            actor=f"{user} (dashboard)" if user else "dashboard",
            tick_seconds=tick,
            policy_dir=policies,
        )
    except CanaryError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        why = "is taken: pick another with --port (0: any free one)" if taken else f"cannot be used: {exc}"
        typer.echo(f"address {address}:{port} {why}", err=True)
        raise typer.Exit(1) from None
    scope = ", ".join(namespaces) if namespaces else "every namespace"
    typer.echo(f"canary dashboard: {server.url} ({scope}; Ctrl-C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` to ``app``."""
    app.command(name="dashboard")(dashboard)
