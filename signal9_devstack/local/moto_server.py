"""Run moto's server on a free loopback port and print where, so the local stack knows when it is ready."""

from __future__ import annotations

import argparse
import signal
import threading

from moto.server import ThreadedMotoServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m signal9_devstack.local.moto_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(f"listening on http://{host}:{port}", flush=True)
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
