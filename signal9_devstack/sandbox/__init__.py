"""A local stand-in for Alpaca's REST API; see `server` for what it serves and `__main__` to start it."""

from signal9_devstack.sandbox.server import SandboxServer, SandboxState

__all__ = ["SandboxServer", "SandboxState", "start_in_thread"]


def start_in_thread(universe: list[dict] | None = None, *, host: str = "127.0.0.1", port: int = 0,
                    api_key: str, secret_key: str, rate_limit_per_minute: int = 200, seed: int = 0,
                    plan: str = "free", crypto_daily_stamp: str = "utc") -> SandboxServer:
    """Start a sandbox serving from a daemon thread of this process; stop it with `server.shutdown()`.

    `plan` is "free" (Alpaca's Basic: IEX by default, no SIP of the last 15 minutes) or "paid" (Algo Trader
    Plus: SIP by default); `crypto_daily_stamp` is "utc" (current) or "us_central" (older data).
    """
    import threading

    from signal9_devstack.sandbox.universe import build_universe

    state = SandboxState(universe if universe is not None else build_universe(seed), api_key=api_key,
                         secret_key=secret_key, rate_limit_per_minute=rate_limit_per_minute, seed=seed, plan=plan,
                         crypto_daily_stamp=crypto_daily_stamp)
    server = SandboxServer((host, port), state)
    threading.Thread(target=server.serve_forever, name="alpaca-sandbox", daemon=True).start()
    return server
