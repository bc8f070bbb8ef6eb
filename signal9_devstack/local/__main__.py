"""`python -m signal9_devstack.local`: manage the local stack and run the pipeline against it."""

from __future__ import annotations

import argparse
import sys

from signal9_devstack.local import stack
from signal9_devstack.local.provision import ProvisionError, provision
from signal9_pipeline.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signal9_devstack.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start sandbox, dynalite and moto in the background, provision, write local.env")
    run = sub.add_parser("run", help="start the stack if needed, run the daily pipeline once, print a summary")
    for p in (up, run):
        p.add_argument("--rate-limit-per-minute", type=int, default=200,
                       help="the sandbox's (and the pipeline's) limit")
        p.add_argument("--seed", type=int, default=0, help="seed of the sandbox's generated universe")
        p.add_argument("--universe", help="JSON file with the asset list the sandbox serves")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("status", help="which local services are running")
    sub.add_parser("provision", help="create tables, event bus and secret wherever AWS_ENDPOINT_URL* point (or AWS)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            env = stack.up(rate_limit_per_minute=args.rate_limit_per_minute, seed=args.seed, universe=args.universe)
            print(f"local stack up; settings in {stack.home_dir() / 'local.env'}")
            for key in ("ALPACA_TRADING_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"):
                print(f"  {key}={env[key]}")
        elif args.command == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        elif args.command == "status":
            services = stack.status()
            for name, alive in services.items():
                print(f"{name}: {'running' if alive else 'stopped'}")
            if not services:
                print("local stack not started")
        elif args.command == "provision":
            for line in provision(Settings.from_env()):
                print(line)
        elif args.command == "run":
            from signal9_devstack.local.run import run_pipeline

            return run_pipeline(rate_limit_per_minute=args.rate_limit_per_minute, seed=args.seed,
                                universe=args.universe)
    except (stack.StackError, ProvisionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
