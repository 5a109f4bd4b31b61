"""The ``cartesia-stt`` command: ``cartesia-stt twin --host 127.0.0.1 --port 8765``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartesia-stt",
        description="Cartesia realtime STT (manual finalize): asyncio client, local twin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    twin = sub.add_parser(
        "twin",
        help="serve the local twin of the Cartesia STT WebSocket API",
        description="Serve /stt/websocket locally. Point a client at it with "
        "base_url=http://HOST:PORT (or CARTESIA_BASE_URL).",
    )
    twin.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    twin.add_argument("--port", type=int, default=8765, help="port to bind (default 8765; 0 = any)")
    twin.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only this key (repeatable); default: any non-empty key",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "twin":
        from .twin import run_forever

        try:
            asyncio.run(run_forever(args.host, args.port, api_keys=args.api_keys))
        except KeyboardInterrupt:
            return 130
        except OSError as exc:
            print(
                f"cartesia-stt twin: cannot serve on {args.host}:{args.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        return 0
    return 2  # pragma: no cover - argparse enforces the sub-command
