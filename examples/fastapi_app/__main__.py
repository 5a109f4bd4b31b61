"""``python -m examples.fastapi_app [--host HOST] [--port PORT]``: serve the example app.

With ``CARTESIA_API_KEY`` set it talks to Cartesia; without it, to a local twin with the
offline recognizer (needs the ``twin`` extra), so the page works with no key and no network.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from .app import Settings, create_app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run uvicorn until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m examples.fastapi_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    app = create_app(Settings(local_twin=not os.environ.get("CARTESIA_API_KEY")))
    uvicorn.run(app, host=args.host, port=args.port, ws="websockets-sansio")


if __name__ == "__main__":
    main()
