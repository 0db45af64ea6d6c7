#!/usr/bin/env bash
# Sets up this machine for drover and starts `drover server` (control plane + local agent), like k3s.
# Idempotent: re-running skips what is already there. Needs root for apt and for podman.
set -euo pipefail
cd "$(dirname "$0")/.."

info() { printf '[drover] %s\n' "$*" >&2; }
fatal() { printf '[drover] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fatal "run as root (apt-get and podman need it): from a root shell $0, else sudo $0"
command -v node >/dev/null || fatal "Node.js 20 or newer is required"

need=()
for bin in podman runc busybox; do command -v "$bin" >/dev/null || need+=("$bin"); done
if [ ${#need[@]} -gt 0 ]; then
  info "installing podman, runc, busybox-static"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static >/dev/null
fi

# podman on these machines needs runc + cgroupfs and explicit ulimits (see firmware-notes/podman.md).
if [ ! -f /etc/containers/containers.conf ]; then
  info "writing /etc/containers/containers.conf (runc, cgroupfs)"
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  info "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
info "building"
npm run -s build
# The single binaries for amd64/arm64 (and armv7 where qemu-user is) that the server hands to install.sh
# on other devices (GET /download/drover-linux-ARCH). Rebuilt only when the sources changed.
scripts/binary/ensure.sh

# A tiny local image so the README's example works without a registry.
if ! podman image exists localhost/busybox:latest; then
  info "building the example image localhost/busybox:latest from busybox-static"
  ctx=$(mktemp -d)
  cp "$(command -v busybox)" "$ctx/busybox"
  printf 'FROM scratch\nADD busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nCMD ["sh"]\n' > "$ctx/Containerfile"
  podman build -q -t localhost/busybox:latest "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# First start makes the CA (DATA_DIR/tls), the join token file and ~/.drover/config (HTTPS URL, admin
# token, CA; 0600), so `drover get nodes` works from another terminal right away.
info "starting drover server: API over HTTPS on 6443, MQTT over TLS on 8883 (Ctrl-C to stop)"
# As install.sh's service: the young generation capped and malloc giving memory back (see SERVER_NODE_OPTIONS and
# SERVER_MALLOC_TUNABLES there); a NODE_OPTIONS or GLIBC_TUNABLES of yours kept.
GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.trim_threshold=65536:glibc.malloc.top_pad=0}" \
  NODE_OPTIONS="--max-semi-space-size=8${NODE_OPTIONS:+ $NODE_OPTIONS}" exec node bin/drover.js server --downloads-dir "$PWD/dist/bin" "$@"
