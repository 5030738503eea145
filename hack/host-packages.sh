#!/usr/bin/env bash
# The Debian packages the local cluster needs, installed only when missing:
#   containernetworking-plugins        the real node's CNI plugins (bridge, host-local, loopback, portmap)
#   libseccomp-dev, pkg-config         runc (built from the Go module proxy) links libseccomp
#   iptables, iproute2, conntrack      kube-proxy and the pod bridge
#   buildah, mmdebstrap                offline image builds (no registry is reachable)
#   python3-venv                       `make install`'s virtual environment
#   lua5.4                             runs docs/argocd-health.lua in its test (Argo CD's health checks are Lua)
#   wrk                                `make bench`'s REST poll load (loopback only)
# Package indexes come from the machine's own apt configuration.
set -euo pipefail
packages=(containernetworking-plugins libseccomp-dev pkg-config iptables iproute2 conntrack buildah mmdebstrap python3-venv lua5.4 wrk)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "host-packages: missing ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "host-packages: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
