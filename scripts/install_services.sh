#!/usr/bin/env bash
# Installs the services of the distributed profile (PostgreSQL and Redis) with apt-get when
# they are missing. Idempotent: installs nothing when both are present. Without root (or
# without apt-get) it only says what to install. Exit status 0 when both are available.
set -euo pipefail

postgres_present() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

redis_present() {
    command -v redis-server >/dev/null 2>&1
}

missing=()
postgres_present || missing+=(postgresql)
redis_present || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
    echo "postgresql and redis-server are installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}" >&2
    echo "install them as root, e.g. 'sudo apt-get install -y ${missing[*]}' (Debian/Ubuntu)," >&2
    echo "'brew install postgresql redis' (macOS), or run this script as root." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "installed: ${missing[*]}"
