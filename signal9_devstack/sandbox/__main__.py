"""`python -m signal9_devstack.sandbox`: serve the Alpaca sandbox until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from signal9_devstack.sandbox.bars import CRYPTO_DAILY_STAMPS, UTC_MIDNIGHT
from signal9_devstack.sandbox.server import PLANS, SandboxServer, SandboxState
from signal9_devstack.sandbox.universe import build_universe
from signal9_pipeline import settings

# Sandbox-only keys; the local stack generates its own and passes them in the environment.
DEFAULT_KEY_ENV, DEFAULT_SECRET_ENV = "SIGNAL9_SANDBOX_API_KEY", "SIGNAL9_SANDBOX_SECRET_KEY"


class UniverseFileError(ValueError):
    """The --universe file cannot be used; the message names the file and the reason."""


def load_universe(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise UniverseFileError(f"cannot read universe file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UniverseFileError(f"universe file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
        raise UniverseFileError(f"universe file {path} must hold a JSON array of asset objects (the /v2/assets shape)")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signal9_devstack.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--universe", help="JSON file with the /v2/assets array to serve instead of the generated one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-limit-per-minute", type=int, default=200)
    parser.add_argument("--plan", choices=PLANS, default="free",
                        help="market data plan: free (IEX by default, no SIP of the last 15 minutes) or paid (SIP)")
    parser.add_argument("--crypto-daily-stamp", choices=CRYPTO_DAILY_STAMPS, default=UTC_MIDNIGHT,
                        help="crypto daily bars at midnight UTC (Alpaca today) or midnight US Central (older data)")
    parser.add_argument("--api-key", default=settings.get(DEFAULT_KEY_ENV))
    parser.add_argument("--secret-key", default=settings.get(DEFAULT_SECRET_ENV))
    args = parser.parse_args(argv)
    if not args.api_key or not args.secret_key:
        parser.error(f"give --api-key and --secret-key (or set {DEFAULT_KEY_ENV} and {DEFAULT_SECRET_ENV})")
    if args.rate_limit_per_minute < 1:
        parser.error("--rate-limit-per-minute must be at least 1")
    try:
        universe = load_universe(args.universe) if args.universe else build_universe(args.seed)
    except UniverseFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = SandboxState(universe, api_key=args.api_key, secret_key=args.secret_key,
                         rate_limit_per_minute=args.rate_limit_per_minute, seed=args.seed, plan=args.plan,
                         crypto_daily_stamp=args.crypto_daily_stamp)
    try:
        server = SandboxServer((args.host, args.port), state)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
