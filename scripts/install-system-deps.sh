#!/usr/bin/env bash
# Installs the Debian packages the integration tests drive for real:
#   prometheus  -> prometheus + promtool (scrape, consul_sd, exemplar storage, lint)
#   etcd-server -> etcd (registrar and discovery against a real etcd v3)
#   golang-go   -> `go tool pprof` (reads our /debug/pprof profiles)
#   wrk         -> HTTP load generator for bench/
#   prometheus-alertmanager -> alertmanager + amtool (deploy/ config check; the demo's Alertmanager)
#   chromium, chromium-driver -> headless browser tests of the instance pages (tests/ui, WebDriver over HTTP)
#   nodejs, npm -> the reference StatsD daemon (npm `statsd`, pinned below) the StatsD push tests send to;
#                  installed with npm into .cache/npm of this checkout (no root needed for that part)
# Only acts when something is missing and apt is usable (root, apt-get present);
# otherwise it says what is missing and leaves the decision to the test run
# (STATOR_REQUIRE_EXTERNAL=1 turns "missing" into a failure, see .ci/run).
set -euo pipefail

STATSD_NPM_VERSION=0.9.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
install_statsd() {
  local dir="$ROOT/.cache/npm"
  if [ -f "$dir/node_modules/statsd/stats.js" ] &&
     grep -q "\"version\": \"$STATSD_NPM_VERSION\"" "$dir/node_modules/statsd/package.json"; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-system-deps: npm missing; the StatsD daemon tests will skip (or fail under STATOR_REQUIRE_EXTERNAL=1)" >&2
    return 0
  fi
  mkdir -p "$dir"
  echo "install-system-deps: installing statsd@$STATSD_NPM_VERSION (npm) into $dir" >&2
  npm install --prefix "$dir" --save-exact --no-audit --no-fund --omit=optional --loglevel=error "statsd@$STATSD_NPM_VERSION" >/dev/null
}

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool   >/dev/null 2>&1 || need+=(prometheus)
command -v etcd       >/dev/null 2>&1 || need+=(etcd-server)
command -v go         >/dev/null 2>&1 || need+=(golang-go)
command -v wrk        >/dev/null 2>&1 || need+=(wrk)
command -v amtool     >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v node       >/dev/null 2>&1 || need+=(nodejs)
command -v npm        >/dev/null 2>&1 || need+=(npm)
command -v chromium     >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && { install_statsd; exit 0; }
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: missing ${need[*]} and apt-get is not usable here; tests that need them will skip (or fail under STATOR_REQUIRE_EXTERNAL=1)" >&2
  install_statsd
  exit 0
fi
echo "install-system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# --no-install-recommends keeps golang-go from pulling in the whole toolchain docs.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the daemons it installs where a service manager runs; the tests
# start their own on random loopback ports, so stop any that came up.
for svc in prometheus etcd prometheus-alertmanager; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
install_statsd
