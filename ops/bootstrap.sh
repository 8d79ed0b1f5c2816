#!/usr/bin/env bash
# Set up this checkout on a Debian 12 machine (as root) and run the demo or the tests.
#
#   ops/bootstrap.sh demo    install, then run the demo (a call through the HA pair, with a failover)
#   ops/bootstrap.sh test    install, then run the whole test suite
#   ops/bootstrap.sh setup   install only
#   ops/bootstrap.sh install-service [--node gw-a] [--root DIR]
#                            install, then the systemd unit voip-alg-gateway@.service and a
#                            sample node file /etc/voip-alg-gateway/NODE.toml (gwctl install-service)
#
# Idempotent: Debian packages are installed only when missing, the virtual
# environment in .venv/ is created once and refreshed from pyproject.toml.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

# Debian packages: the peers the end-to-end tests talk to (SIPp, osmo-mgw), the
# dissector that checks what the gateway emits (tshark), the kernel's packet
# plumbing (iptables for the NFQUEUE target, iproute2 for namespaces), and the
# headers netfilterqueue compiles against, systemd (the service manager the
# unit in ops/systemd/ is for; its systemd-analyze checks the unit in the tests),
# headless Chromium and its driver for the web interface's end-to-end tests,
# openssl for their certificate.
debs=(
    python3-venv python3-dev build-essential pkg-config
    libnetfilter-queue-dev libnfnetlink-dev
    iptables nftables conntrack iproute2 tcpdump
    sip-tester tshark osmo-mgw
    systemd
    chromium chromium-driver openssl
)

need_apt=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: these Debian packages are missing and installing them needs root: ${need_apt[*]}" >&2
        exit 1
    fi
    echo "bootstrap: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi
stamp=.venv/.installed-from
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing the Python environment"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[nfqueue,web,test]"
    echo "$want" > "$stamp"
fi

case "${1:-setup}" in
    setup) echo "bootstrap: ready (.venv/bin/gwctl, .venv/bin/gatewayd)";;
    demo)  shift; exec .venv/bin/gwctl demo "$@";;
    test)  shift; exec .venv/bin/python -m pytest -q "$@";;
    install-service) shift; exec .venv/bin/gwctl install-service "$@";;
    *) echo "usage: ops/bootstrap.sh [setup|demo|test|install-service] [args...]" >&2; exit 2;;
esac
