#!/usr/bin/env bash
# The Debian packages the test suite needs (qemu-user and the aarch64 cross compiler for the emulated-board
# tests, valgrind for traffic measurements, chromium for rendered reports, g++ for host bundles). Installs
# the missing ones with one apt-get line when run as root where apt-get exists; otherwise says what is
# missing (those tests skip, or fail under CI=true). Quiet and idempotent: nothing runs when all are there.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-aarch64 || need+=(qemu-user)
have aarch64-linux-gnu-g++ || need+=(g++-aarch64-linux-gnu)
have g++ || need+=(g++)
have valgrind || need+=(valgrind)
have chromium || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && have apt-get; then
  echo "system packages: installing ${need[*]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null
else
  echo "system packages: missing ${need[*]} (tests that need them skip; Debian: apt-get install ${need[*]})" >&2
fi
