"""The Kubernetes API emulator of the scale benchmark, as a process of its own that counts every request.

``python -m benchmarks.scale_kubeapi --crd FILE --virtualservice FILE --count N --kubeconfig PATH`` loads
``N`` copies of the VirtualService (namespaces ``bench-0000``, ``bench-0001``...), serves them, writes a
kubeconfig, prints the URL on the first line of standard output, and then answers commands read from
standard input, one JSON line per command:

* ``phases``: how many file-mode status ConfigMaps (in ``--controller-namespace``) are in each phase;
  ``missing`` counts the rollouts without one yet, ``analysed`` those progressing with their weight
  confirmed and an analysis of their step recorded.
* ``paused NAMESPACE,NAMESPACE...``: of those rollouts' status ConfigMaps, how many are in each phase (and
  ``Paused/<pausedReason>`` for the paused ones).
* ``dump PATH [SINCE]``: writes every request served so far (``[monotonic time, verb, resource, subresource,
  namespace, name]``; with ``SINCE``, only those from that monotonic time on) and every write (with its
  ``User-Agent``, the canary weight of a written VirtualService, and for a status ConfigMap the status
  fields the write changed and the phase, ``pausedReason`` and stall it holds) to ``PATH`` as JSON;
  answers with the counts.

It exits when standard input closes (so it never outlives the benchmark), or on SIGTERM or SIGINT.
Requests are counted where the emulator routes them (fault injection sees every request), so
discovery calls are counted too, and watches once, when they open. Times are ``time.monotonic()``, which is
the same clock in every process of the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from canary_sandbox.kubeapi import Fault, FaultInjector, KubeApiEmulator
from canary_sandbox.kubeapi.faults import RequestInfo
from canary_sandbox.kubeapi.store import ObjectStore

NAMESPACE_PREFIX = "bench-"
CANARY_SUBSET = "v2"

RequestRow = tuple[float, str, str, str, str, str]


def namespace_of(index: int) -> str:
    """The namespace of rollout ``index``."""
    return f"{NAMESPACE_PREFIX}{index:04d}"


class CountingFaults(FaultInjector):
    """A fault injector without rules that notes every request it is asked about."""

    def __init__(self, store: ObjectStore) -> None:
        super().__init__(store)
        self.requests: list[RequestRow] = []

    def take(self, info: RequestInfo) -> Fault | None:
        """Note the request (list.append is atomic), then apply the rules (there are none)."""
        self.requests.append(
            (
                time.monotonic(),
                info.verb,
                info.plural or info.path,
                info.subresource or "",
                info.namespace or "",
                info.name or "",
            )
        )
        return super().take(info)


def canary_weight(obj: dict[str, Any]) -> int | None:
    """The weight of the canary subset in a VirtualService's tcp routes (None when it has no canary)."""
    for route in (obj.get("spec") or {}).get("tcp") or []:
        for entry in route.get("route") or []:
            if (entry.get("destination") or {}).get("subset") == CANARY_SUBSET:
                return int(entry.get("weight") or 0)
    return None


def stored_status(obj: dict[str, Any]) -> dict[str, Any]:
    """A status ConfigMap's ``data.status``, parsed (empty when it has none)."""
    raw = (obj.get("data") or {}).get("status")
    status: dict[str, Any] = json.loads(raw) if raw else {}
    return status


def changed_fields(previous: dict[str, dict[str, Any]], name: str, obj: dict[str, Any]) -> list[str]:
    """The top-level fields of a status ConfigMap's ``data.status`` that differ from its previous write."""
    status = stored_status(obj)
    before = previous.get(name, {})
    previous[name] = status
    return sorted(key for key in set(status) | set(before) if status.get(key) != before.get(key))


def phases(emulator: KubeApiEmulator, namespace: str, count: int) -> dict[str, int]:
    """Rollouts per phase, from the status ConfigMaps; ``analysed``: those Progressing whose weight is confirmed
    and that have had an analysis of their step (steady from then on)."""
    found: Counter[str] = Counter()
    analysed = 0
    for item in emulator.list("configmaps", namespace=namespace):
        raw = (item.get("data") or {}).get("status")
        if not raw:
            continue
        status = json.loads(raw)
        found[str(status.get("phase"))] += 1
        steady = status.get("phase") == "Progressing" and not status.get("writePending")
        analysed += int(steady and status.get("lastAnalysisAt") is not None)
    found["missing"] = max(0, count - sum(found.values()))
    found["analysed"] = analysed
    return dict(found)


def verdicts(emulator: KubeApiEmulator, namespace: str) -> dict[str, int]:
    """Rollouts per last analysis verdict (its text cut to 160 characters), from the status ConfigMaps."""
    found: Counter[str] = Counter()
    for item in emulator.list("configmaps", namespace=namespace):
        raw = (item.get("data") or {}).get("status")
        if raw:
            found[str(json.loads(raw).get("lastVerdict"))[:160]] += 1
    return dict(found.most_common(10))


def paused(emulator: KubeApiEmulator, namespace: str, rollouts: Sequence[str]) -> dict[str, int]:
    """Of the given rollouts (by namespace), how many status ConfigMaps are in each phase (``Paused/<reason>``
    for paused ones; ``missing`` when there is none)."""
    found: Counter[str] = Counter()
    for rollout in rollouts:
        obj = emulator.get("configmaps", f"canary-{rollout}-tcp-echo", namespace=namespace)
        if obj is None:
            found["missing"] += 1
            continue
        status = stored_status(obj)
        phase = str(status.get("phase"))
        found[f"{phase}/{status.get('pausedReason')}" if phase == "Paused" else phase] += 1
    return dict(found)


def dump(emulator: KubeApiEmulator, faults: CountingFaults, path: str, since: float | None = None) -> dict[str, int]:
    """Write the request log (from ``since`` on, when given) and the whole write history to ``path``."""
    requests = [row for row in faults.requests if since is None or row[0] >= since]
    writes = []
    statuses: dict[str, dict[str, Any]] = {}
    for record in emulator.history(source="http"):
        write: dict[str, Any] = {
            "time": record.time,
            "verb": record.verb,
            "resource": record.resource,
            "subresource": record.subresource,
            "namespace": record.namespace,
            "name": record.name,
            "changed": record.changed,
            "user_agent": record.user_agent,
        }
        if record.resource.startswith("virtualservices."):
            write["weight"] = canary_weight(record.object)
        elif record.resource == "configmaps":
            write["status_fields_changed"] = changed_fields(statuses, record.name, record.object)
            status = statuses[record.name]
            write["phase"] = status.get("phase")
            write["paused_reason"] = status.get("pausedReason")
            write["stall"] = status.get("stall")
        writes.append(write)
    Path(path).write_text(json.dumps({"requests": requests, "writes": writes}), encoding="utf-8")
    return {"requests": len(requests), "writes": len(writes)}


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_kubeapi", description=__doc__)
    parser.add_argument("--crd", required=True, help="the VirtualService CRD manifest")
    parser.add_argument("--virtualservice", required=True, help="a YAML file holding the VirtualService to copy")
    parser.add_argument("--count", type=int, required=True, help="how many copies (one namespace each)")
    parser.add_argument("--controller-namespace", default="canary-system")
    parser.add_argument("--kubeconfig", required=True, help="where to write a kubeconfig for the emulator")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Load, serve, answer commands until standard input closes or a signal arrives."""
    args = build_parser().parse_args(argv)
    with open(args.virtualservice, encoding="utf-8") as stream:
        documents = [doc for doc in yaml.safe_load_all(stream) if isinstance(doc, dict)]
    template = next(doc for doc in documents if doc.get("kind") == "VirtualService")
    emulator = KubeApiEmulator(crds=[args.crd])
    faults = CountingFaults(emulator.store)
    emulator.faults = faults
    emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.controller_namespace}})
    for index in range(args.count):
        emulator.put(copy.deepcopy(template), namespace=namespace_of(index))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()
        sys.stdin.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emulator:
        emulator.write_kubeconfig(args.kubeconfig)
        print(emulator.url, flush=True)
        try:
            for line in sys.stdin:
                words = line.split()
                if not words:
                    continue
                reply: dict[str, Any]
                if words[0] == "phases":
                    reply = phases(emulator, args.controller_namespace, args.count)
                elif words[0] == "verdicts":
                    reply = verdicts(emulator, args.controller_namespace)
                elif words[0] == "paused" and len(words) == 2:
                    reply = paused(emulator, args.controller_namespace, words[1].split(","))
                elif words[0] == "dump" and len(words) in (2, 3):
                    reply = dump(emulator, faults, words[1], float(words[2]) if len(words) == 3 else None)
                else:
                    reply = {"error": f"unknown command {line.strip()!r}"}
                print(json.dumps(reply), flush=True)
                if stop.is_set():
                    break
        except (ValueError, OSError):  # stdin closed by the signal handler
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
