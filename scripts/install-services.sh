#!/usr/bin/env bash
# Debian packages the tests need: the servers the production-like tests start, PostgreSQL
# (Dagster's storage) and Redis (the shared Alpaca rate limiter), Chromium, which the
# browser test (signal9_pipeline_tests/ui/) drives through Playwright, and faketime (libfaketime),
# which runs the CLI under a controlled clock (signal9_pipeline_tests/test_one_company_one_history.py).
# The tests start their own servers on loopback; the packages' own services are kept from starting
# during the install.
set -euo pipefail

need=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v faketime >/dev/null || need+=(faketime)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi

# Debian starts a package's service on install unless policy-rc.d says no (101).
policy=/usr/sbin/policy-rc.d
created_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=true
fi
trap '$created_policy && rm -f "$policy"' EXIT

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
