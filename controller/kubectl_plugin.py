"""``kubectl canary ...``: canaryctl as a kubectl plugin (the ``kubectl-canary`` executable), kubectl-style.

kubectl runs an executable named ``kubectl-canary`` found on PATH for ``kubectl canary ARGS`` and hands it ARGS
as typed (kubectl 1.20 refuses flags placed before the plugin's name). This entry point is canaryctl with what
a kubectl user expects:

* ``-n/--namespace``, ``-A/--all-namespaces``, ``--context`` and ``--kubeconfig`` go anywhere on the line, before
  or after the command (``kubectl canary -n shop status``), in ``--flag value``, ``--flag=value`` or ``-nshop``
  form;
* without ``-n`` or ``-A``, a command taking one namespace uses the namespace of the kubeconfig's current
  context (or of ``--context``), as kubectl does, and ``default`` when the context sets none;
* a global flag given to a command that has no use for it (``kubectl canary lint -n shop``) is a usage error
  naming the flag, never silently ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import typer

PROG_NAME = "kubectl canary"
USAGE_ERROR = 2

# kubectl's global flags canaryctl knows: (long form, short form, takes a value), keyed by canaryctl's option.
_GLOBAL_FLAGS: dict[str, tuple[str, str | None, bool]] = {
    "namespace": ("--namespace", "-n", True),
    "all_namespaces": ("--all-namespaces", "-A", False),
    "context": ("--context", None, True),
    "kubeconfig": ("--kubeconfig", None, True),
}


class PluginUsageError(ValueError):
    """The command line cannot be mapped onto canaryctl; the message names the flag."""


@dataclass
class GlobalFlags:
    """kubectl's global flags found on a command line, and what remains of it in order."""

    values: dict[str, str | bool] = field(default_factory=dict)
    rest: list[str] = field(default_factory=list)


def split_global_flags(args: Sequence[str]) -> GlobalFlags:
    """Take kubectl's global flags out of ``args`` wherever they are (up to a ``--``).

    Raises:
        PluginUsageError: a flag that takes a value comes last without one, or one is given twice.
    """
    found = GlobalFlags()
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            found.rest.extend(args[index - 1 :])
            break
        matched = False
        for key, (long, short, takes_value) in _GLOBAL_FLAGS.items():
            value: str | bool | None = None
            if arg == long or (short is not None and arg == short):
                if takes_value:
                    if index >= len(args):
                        raise PluginUsageError(f"flag needs an argument: {arg}")
                    value = args[index]
                    index += 1
                else:
                    value = True
            elif takes_value and arg.startswith(long + "="):
                value = arg[len(long) + 1 :]
            elif takes_value and short is not None and arg.startswith(short) and len(arg) > len(short):
                value = arg[len(short) :].removeprefix("=")
            elif not takes_value and arg.startswith(long + "="):
                text = arg[len(long) + 1 :].lower()
                if text not in {"true", "false"}:
                    raise PluginUsageError(f"invalid argument {text!r} for {long}: true or false")
                value = text == "true"
            if value is None:
                continue
            if key in found.values and found.values[key] != value:
                raise PluginUsageError(f"{long} given twice with different values")
            found.values[key] = value
            matched = True
            break
        if not matched:
            found.rest.append(arg)
    return found


def context_namespace(*, kubeconfig: str | None, context: str | None) -> str | None:
    """The namespace the kubeconfig's current context (or ``context``) sets, None when none or unreadable."""
    from kubernetes.config import kube_config  # noqa: PLC0415 - only when a namespace must be looked up

    try:
        contexts, current = kube_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
    except Exception:  # no kubeconfig: canaryctl itself says so when it loads one
        return None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    if not chosen:
        return None
    namespace = (chosen.get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def _options_of(command: Any) -> dict[str, Any]:
    return {param.name: param for param in getattr(command, "params", []) if param.name}


def canaryctl_args(args: Sequence[str], group: Any) -> list[str]:
    """The canaryctl command line for ``kubectl canary ARGS``.

    Args:
        args: what kubectl passed (everything after ``canary``).
        group: canaryctl's click group (``typer.main.get_command(app)``).

    Raises:
        PluginUsageError: a global flag the command has no use for, or a malformed flag.
    """
    found = split_global_flags(args)
    position = next((i for i, arg in enumerate(found.rest) if not arg.startswith("-")), None)
    if position is None:
        if found.values:
            flags = ", ".join(_GLOBAL_FLAGS[key][0] for key in found.values)
            raise PluginUsageError(f"{flags}: name a command first (kubectl canary --help lists them)")
        return list(found.rest)
    name = found.rest[position]
    command = group.commands.get(name) if hasattr(group, "commands") else None
    if command is None:  # canaryctl says "No such command"
        return list(found.rest)
    options = _options_of(command)
    values = dict(found.values)
    namespace_param = options.get("namespace")
    if (
        namespace_param is not None
        and not getattr(namespace_param, "multiple", False)
        and "namespace" not in values
        and not values.get("all_namespaces")
    ):
        kubeconfig = values.get("kubeconfig")
        context = values.get("context")
        from_context = context_namespace(
            kubeconfig=kubeconfig if isinstance(kubeconfig, str) else None,
            context=context if isinstance(context, str) else None,
        )
        if from_context is not None:
            values["namespace"] = from_context
    extra: list[str] = []
    for key, value in values.items():
        long = _GLOBAL_FLAGS[key][0]
        if key not in options:
            raise PluginUsageError(f"kubectl canary {name}: {long} does not apply to this command")
        if value is True:
            extra.append(long)
        elif isinstance(value, str):
            extra += [long, value]
    return [*found.rest[: position + 1], *extra, *found.rest[position + 1 :]]


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of ``kubectl-canary``."""
    from controller.cli import app  # noqa: PLC0415 - the whole CLI, once the line is understood

    group = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        translated = canaryctl_args(args, group)
    except PluginUsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(USAGE_ERROR) from None
    group.main(args=translated, prog_name=PROG_NAME, complete_var="_KUBECTL_CANARY_COMPLETE")


if __name__ == "__main__":  # pragma: no cover
    main()
