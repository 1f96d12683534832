"""``python -m fotakit.server --host 127.0.0.1 --port 5683 --db sqlite:///fotakit.db``.

A minimal runner for the server alone (the full CLI is ``fotakit server``). Prints
``listening <host> <port>`` on stdout once the server is ready, which lets scripts and
tests wait for it without guessing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from fotakit.coap import TransportParams
from fotakit.server.config import ServerConfig
from fotakit.server.runner import run_server
from fotakit.server.server import LwM2MServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fotakit.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5683)
    parser.add_argument("--db", default="sqlite:///fotakit.db", help="database URL")
    parser.add_argument("--ack-timeout", type=float, default=2.0)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--expiry-grace", type=float, default=2.0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config = ServerConfig(
        host=args.host,
        port=args.port,
        db_url=args.db,
        transport=TransportParams(
            ack_timeout=args.ack_timeout, request_timeout=args.request_timeout
        ),
        expiry_grace=args.expiry_grace,
    )

    def started(server: LwM2MServer) -> None:
        print(f"listening {args.host} {server.port}", flush=True)

    asyncio.run(run_server(config, on_started=started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
