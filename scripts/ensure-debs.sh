#!/usr/bin/env bash
# Makes sure the outside tools the tests drive are present.
# As root: installs the missing Debian packages. Otherwise: names them; the tests that need
# them skip and say why (tests/conftest.py: requires_tool).
set -u
declare -A pkg_of=(
  [sipp]=sip-tester
  [tshark]=tshark
  [gnutls-cli]=gnutls-bin
  [gnutls-serv]=gnutls-bin
  [systemd-analyze]=systemd
  [unshare]=util-linux
  [podman]=podman
  [mmdebstrap]=mmdebstrap
  [podman-compose]=podman-compose
  [runc]=runc
  [kamailio]=kamailio
  [promtool]=prometheus
)
# deploy/kamailio needs modules from these (http_client; jansson and acc_json; tls)
kamailio_modules=(kamailio-utils-modules kamailio-extra-modules kamailio-tls-modules)
missing=()
for cmd in "${!pkg_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
done
# PostgreSQL's server tools are not on PATH on Debian: the store tests' throw-away cluster
# (tests/pg_cluster.py) runs /usr/lib/postgresql/VERSION/bin/initdb and pg_ctl.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
for p in "${kamailio_modules[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-debs: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null || {
    echo "ensure-debs: apt-get failed; tests needing ${missing[*]} will skip" >&2
  }
else
  echo "ensure-debs: missing Debian packages: ${missing[*]}" >&2
  echo "ensure-debs: install them with: sudo apt-get install -y ${missing[*]}" >&2
  echo "ensure-debs: until then the tests that need them skip, saying why" >&2
fi
exit 0
