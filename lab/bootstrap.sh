#!/usr/bin/env bash
# Installs what evpn-agent's demo and tests need on a fresh Debian machine, and nothing
# that is already there: Debian's FRR, GoBGP and iproute2, and the package with its test
# extras in a virtual environment (.venv at the top of the checkout). Safe to run again.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: run as root (network namespaces, FRR and netlink need it)" >&2
    exit 1
fi

need=()
[ -x /usr/lib/frr/bgpd ] && [ -x /usr/lib/frr/zebra ] && command -v vtysh >/dev/null || need+=(frr)
# GoBGP: the second route reflector the tests interoperate with. Debian's unit starts only
# with /etc/gobgpd.conf, which nothing here writes: the tests run their own gobgpd.
command -v gobgpd >/dev/null && command -v gobgp >/dev/null || need+=(gobgpd)
command -v ip >/dev/null && command -v bridge >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need[*]} from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

venv="$top/.venv"
stamp="$venv/.evpn-agent-installed"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$top/pyproject.toml" -nt "$stamp" ]; then
    echo "bootstrap: installing evpn-agent and its test extras into $venv" >&2
    "$venv/bin/pip" install -q --upgrade pip >/dev/null
    "$venv/bin/pip" install -q -e "$top[test]"
    touch "$stamp"
fi
# The benchmarks' plot library (matplotlib, numpy: ~125 MB) only on request.
if [ "${BOOTSTRAP_BENCH:-}" = 1 ] && ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "bootstrap: installing the bench extra (matplotlib) into $venv" >&2
    "$venv/bin/pip" install -q -e "$top[bench]"
fi
