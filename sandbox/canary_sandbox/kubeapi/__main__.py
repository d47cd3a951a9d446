"""Run the Kubernetes API server emulator as a process.

``python -m canary_sandbox.kubeapi --port 0 --crd FILE... --load FILE...`` prints the URL on the
first line of standard output once it serves, then serves until SIGTERM or SIGINT and exits 0.
State lives in memory only: a restart starts from the files given again.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import yaml

from canary_sandbox.kubeapi.emulator import KubeApiEmulator, UnknownKindError


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m canary_sandbox.kubeapi",
        description="Serve an emulated Kubernetes API on loopback until SIGTERM or SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)")
    parser.add_argument("--crd", nargs="+", default=[], metavar="FILE", help="CRD manifests to register")
    parser.add_argument(
        "--load",
        nargs="+",
        default=[],
        metavar="FILE",
        help="YAML files of objects to load (kinds not served are skipped, with a note on stderr)",
    )
    parser.add_argument("--namespace", default="default", help="namespace for loaded objects that name none")
    parser.add_argument("--kubeconfig", metavar="PATH", help="also write a kubeconfig pointing at the emulator here")
    parser.add_argument(
        "--watch-history", type=int, default=1000, metavar="N", help="watch events kept for resuming (default: 1000)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load, serve until a signal; returns the exit status."""
    args = build_parser().parse_args(argv)
    emulator = KubeApiEmulator(host=args.host, port=args.port, watch_history=args.watch_history)
    for path in args.crd:
        emulator.load_yaml(path)
    for path in args.load:
        with open(path, encoding="utf-8") as stream:
            documents = [doc for doc in yaml.safe_load_all(stream) if isinstance(doc, dict)]
        for document in documents:
            try:
                emulator.put(document, namespace=args.namespace)
            except UnknownKindError as exc:
                print(f"{path}: skipped: {exc}", file=sys.stderr)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emulator:
        if args.kubeconfig:
            emulator.write_kubeconfig(args.kubeconfig)
        print(emulator.url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
