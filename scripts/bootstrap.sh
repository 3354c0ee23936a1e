#!/usr/bin/env bash
# Install everything the tests, the demo and the docs need, on a fresh Debian machine
# with Python 3.10+ and Node.js 18.12+. Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_debian=()
command -v chromium >/dev/null 2>&1 || want_debian+=(chromium)
command -v redis-server >/dev/null 2>&1 || want_debian+=(redis-server)
if [ "${#want_debian[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "== installing Debian packages: ${want_debian[*]}"
  # Another apt run (unattended upgrades, a package manager window) may hold one of
  # Debian's package locks: wait for it, up to APT_LOCK_WAIT seconds, rather than fail.
  lock_wait="${APT_LOCK_WAIT:-300}"
  apt_patiently() {
    local deadline=$((SECONDS + lock_wait)) said="" out
    until out=$(DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o "DPkg::Lock::Timeout=$lock_wait" "$@" 2>&1); do
      if ! grep -q -e "Could not get lock" -e "Unable to lock" <<<"$out" || [ "$SECONDS" -ge "$deadline" ]; then
        printf '%s\n' "$out" >&2
        return 1
      fi
      if [ -z "$said" ]; then
        echo "   another apt or dpkg run holds Debian's package lock; waiting up to ${lock_wait}s for it"
        said=1
      fi
      sleep 3
    done
  }
  apt_patiently update -qq
  apt_patiently install -y -qq --no-install-recommends "${want_debian[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing Python packages"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi

# The local provider (tests/idp) runs oidc-provider 8.x, which supports Node.js 18.12 and later.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 12) ? 0 : 1)' 2>/dev/null; then
  echo "Node.js 18.12 or later is needed (found: $(node --version 2>/dev/null || echo none)); on Debian 12: apt-get install nodejs npm" >&2
  exit 1
fi
if [ ! -d tests/idp/node_modules/oidc-provider ] || [ tests/idp/package-lock.json -nt tests/idp/node_modules ]; then
  echo "== installing the local provider's npm packages"
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi
