"""Shell completion for canaryctl: ``canaryctl completion bash|zsh|fish`` and policy names from the cluster.

``register(app)`` adds the ``completion`` command. ``complete_policy_names`` is the completion callback of
the NAME argument of ``status``, ``pause``, ``resume``, ``promote``, ``abort`` and ``retry``: it lists the
CanaryPolicy resources and file-mode status ConfigMaps the user's kubeconfig can see, with a short timeout,
and returns nothing rather than fail, so a slow or unreachable cluster never breaks the shell.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

# typer builds the scripts and answers their requests with these two; its public --show-completion needs the
# shell detected (shellingham) or add_completion on, which would put two install options on every help page.
from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script

from controller.adapters.kubernetes.control import DEFAULT_CONTROLLER_NAMESPACE

COMPLETION_TIMEOUT_SECONDS = 2.0
"""How long the name completion waits for the API server per request before it offers nothing."""


class Shell(StrEnum):
    """Shells canaryctl writes a completion script for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion_script(shell: Shell, *, prog_name: str = "canaryctl") -> str:
    """The completion script of ``prog_name`` for ``shell`` (typer's protocol: ``_CANARYCTL_COMPLETE``)."""
    completion_init()
    complete_var = "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())
    return get_completion_script(prog_name=prog_name, complete_var=complete_var, shell=str(shell))


def complete_policy_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """The policy names starting with ``incomplete`` in the namespace typed so far (``-n``, ``-A``).

    Reads with ``--kubeconfig``/``--context`` when typed; every failure (no kubeconfig, no cluster, RBAC,
    a timeout) gives no names instead of an error.
    """
    params = ctx.params
    namespace = None if params.get("all_namespaces") else params.get("namespace") or "default"
    controller_namespace = params.get("controller_namespace") or DEFAULT_CONTROLLER_NAMESPACE
    try:
        names = policy_names(
            kubeconfig=params.get("kubeconfig"),
            context=params.get("context"),
            namespace=namespace,
            controller_namespace=controller_namespace,
        )
    except Exception:  # completion must never fail the shell
        return []
    return [name for name in names if name.startswith(incomplete)]


def policy_names(
    *, kubeconfig: str | None, context: str | None, namespace: str | None, controller_namespace: str
) -> list[str]:
    """The names of the CanaryPolicy resources and file-mode policies in ``namespace`` (None: all), sorted.

    Raises:
        CanaryError: no kubeconfig, or the API server cannot be read within the timeout.
    """
    from controller.adapters.kubernetes.control import close_kube_api, list_statuses  # noqa: PLC0415
    from controller.runtime.composition import open_kube_api  # noqa: PLC0415 - heavy imports, completion only

    api = open_kube_api(kubeconfig=kubeconfig, context=context)
    api.timeout = COMPLETION_TIMEOUT_SECONDS
    try:
        listing = list_statuses(api, namespace=namespace, controller_namespace=controller_namespace)
    finally:
        close_kube_api(api)
    return sorted({stored.name for stored in listing.statuses})


def completion(
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="bash, zsh or fish.")],
) -> None:
    """Print the shell completion script for bash, zsh or fish (docs/cli.md says where to put it).

    bash: canaryctl completion bash > ~/.local/share/bash-completion/completions/canaryctl;
    zsh: canaryctl completion zsh > "${fpath[1]}/_canaryctl";
    fish: canaryctl completion fish > ~/.config/fish/completions/canaryctl.fish.
    Policy names complete from the cluster of your kubeconfig (within 2 s, else none).
    """
    typer.echo(completion_script(shell))


def register(app: typer.Typer) -> None:
    """Add ``completion`` to ``app`` and register typer's completion classes, which answer the scripts'
    requests (``_CANARYCTL_COMPLETE=complete_bash`` ...) even though ``--install-completion`` is off."""
    completion_init()
    app.command(name="completion")(completion)
