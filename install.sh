#!/bin/sh
set -e
set -o noglob

# drover installer: puts the single drover binary on a device and runs it as a service.
#
# Usage (as root; the server's certificate is of its own CA, hence -k for this script only, or see
# the README for the one-liner that checks the CA against the token before fetching the script):
#   curl -sfLk https://SERVER:6443/install.sh | DROVER_TOKEN=K10... sh -s - agent --server https://SERVER:6443
#   curl -sfLk https://SERVER:6443/install.sh | sh -s - agent --server https://SERVER:6443 --token K10...
#   INSTALL_DROVER_BINARY=./drover-linux-arm64 sh install.sh agent --server https://SERVER:6443 --token-file FILE
#   INSTALL_DROVER_BINARY=./drover-linux-amd64 sh install.sh server [drover server flags...]
#   /usr/local/bin/drover-uninstall.sh [--purge]
#
# The first argument is the service to install: agent or server. The flags below are the
# installer's; every other flag is handed to `drover agent` / `drover server` in the service
# (see `drover agent --help`, `drover server --help`).
#
# Flags:
#   --server URL          (agent) the server's API URL, https://HOST:6443; the binary is downloaded
#                         from it. Env DROVER_URL.
#   --token TOKEN         (agent) the join token, K10<sha256 of the cluster CA>::<id>.<secret>. While
#                         this installer runs, argv is visible in `ps`: prefer DROVER_TOKEN or
#                         DROVER_TOKEN_FILE. The service never gets the token on its command line: it
#                         is written to /etc/drover/agent-token (0600) and passed as --token-file.
#   --token-file FILE     (agent) read the join token from FILE. Env DROVER_TOKEN_FILE.
#   --node-name NAME, --label KEY=VALUE (repeatable), --runtime auto|podman|nerdctl
#                         handed to the agent (the runtime checked here first).
#   --tls-server-name NAME  (agent) handed to the agent, and the download checks the server's
#                         certificate against NAME too (for an address the certificate lacks).
#   --state-dir DIR       (agent) handed to the agent; where a joined node's identity is looked for.
#   --images DIR          (agent) airgap: load every *.tar in DIR (`podman save` / `nerdctl save`
#                         archives) into the container runtime with `drover image load`, once the
#                         binary is installed and before the service starts; the agent reports them to
#                         the server. Needs no link. A failed load fails the install.
#   --install-runtime     install podman with the system's package manager (apt-get, dnf, yum, apk,
#                         zypper) when neither podman nor nerdctl is present.
#   --no-start            write and enable everything, start nothing (env INSTALL_DROVER_SKIP_START).
#   -h, --help            this text.
#
# The download is trusted through the join token: the CA the server presents at /cacerts must
# have the sha256 the token names (else nothing is downloaded); the binary and SHA256SUMS are then
# fetched over TLS checked against that CA, and the binary must match its line in SHA256SUMS.
# Re-running upgrades in place: the node's identity and cache in /var/lib/drover are kept, and
# no token is needed once the agent has joined.
#
# Environment variables:
#   - DROVER_URL, DROVER_TOKEN, DROVER_TOKEN_FILE
#     As --server, --token, --token-file.
#
#   - INSTALL_DROVER_BINARY
#     Install this local file instead of downloading one (offline install). When a SHA256SUMS
#     file lies beside it, the binary is checked against it.
#
#   - INSTALL_DROVER_SKIP_DOWNLOAD
#     If true, keep the binary already installed in INSTALL_DROVER_BIN_DIR.
#
#   - INSTALL_DROVER_SKIP_START
#     If true, do not start (or restart) the service; as --no-start.
#
#   - INSTALL_DROVER_SKIP_ENABLE
#     If true, neither enable nor start the service.
#
#   - INSTALL_DROVER_FORCE_RESTART
#     If true, restart the service even when nothing changed.
#
#   - INSTALL_DROVER_BIN_DIR
#     Directory of the binary and the uninstall script, /usr/local/bin by default.
#
#   - INSTALL_DROVER_SYSTEMD_DIR
#     Directory of the systemd unit, /etc/systemd/system by default.
#
#   - INSTALL_DROVER_INIT
#     systemd or openrc; found by itself (openrc-run, else systemctl) when unset.
#
#   - INSTALL_DROVER_ARCH
#     Architecture to install instead of `uname -m` (amd64, arm64, arm; for tests). Without it, an
#     aarch64 kernel under an armhf userland (32-bit Raspberry Pi OS on a Pi 4/5) gets the arm build.
#
#   - INSTALL_DROVER_ROOT
#     A prefix for every path written (for tests: a throwaway root). The files written still name
#     the real paths.
#
#   - TMPDIR
#     Where the binary is downloaded and tried (`--version`) before it is installed: needs room
#     (~90 MB) and must not be mounted noexec. /tmp by default.
#
#   - HTTP_PROXY, HTTPS_PROXY, NO_PROXY (and lower case)
#     Written to /etc/drover/drover-SERVICE.env (0600) for the service (image pulls).

# --- messages: [INFO] on stdout, [WARN] and [ERROR] on stderr; fatal exits 1 ---
info() {
    echo '[INFO] ' "$@"
}
warn() {
    echo '[WARN] ' "$@" >&2
}
fatal() {
    echo '[ERROR] ' "$@" >&2
    exit 1
}

NL='
'

usage() {
    cat <<'EOF'
Usage: install.sh agent --server https://SERVER:6443 [--token TOKEN | --token-file FILE] [--node-name NAME]
                        [--label KEY=VALUE]... [--runtime auto|podman|nerdctl] [--images DIR] [--install-runtime] [--no-start]
                        [other `drover agent` flags]
       install.sh server [--install-runtime] [--no-start] [`drover server` flags]
The token may come from DROVER_TOKEN or DROVER_TOKEN_FILE instead (not visible in `ps`).
Offline: INSTALL_DROVER_BINARY=./drover-linux-ARCH sh install.sh agent ...
The comments at the top of install.sh list every environment variable.
EOF
}

# --- defaults ---
ROOT=${INSTALL_DROVER_ROOT:-}
BIN_DIR=${INSTALL_DROVER_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${INSTALL_DROVER_SYSTEMD_DIR:-/etc/systemd/system}
CONF_DIR=/etc/drover
STATE_ROOT=/var/lib/drover
AGENT_STATE_DIR=${STATE_ROOT}/agent
TOKEN_FILE=${CONF_DIR}/agent-token
UNINSTALL_SH=${BIN_DIR}/drover-uninstall.sh
SKIP_START=${INSTALL_DROVER_SKIP_START:-false}
INSTALL_RUNTIME=false
RUNTIME=auto
DISABLE_AGENT=false
TLS_NAME=
URL=${DROVER_URL:-}
TOKEN=${DROVER_TOKEN:-}
TOKEN_SOURCE_FILE=${DROVER_TOKEN_FILE:-}
IMAGES_DIR=
CMD=
# The flags handed to the service, quoted for systemd's ExecStart and for OpenRC's command_args.
SYSTEMD_ARGS=
OPENRC_ARGS=
# Paths this run created (not replaced): removed again if the run fails half-way.
CREATED=
WRITING=false
TMP_DIR=

# --- quoting for the service files ---
# systemd: double quotes, backslash escapes, and % and $ doubled (specifiers, variables).
systemd_quote() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g' -e 's/\$/$$/g')"
}
# sh: single quotes (OpenRC evaluates command_args).
sh_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
# A value inside double quotes of a sh script.
# shellcheck disable=SC2016 # the backquote in the sed expression is the character to escape
escape_dq() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\$/\\$/g' -e 's/`/\\`/g'
}

pass_arg() {
    case $1 in
        *"$NL"*) fatal "a flag for the service contains a newline: $(printf '%s' "$1" | head -n 1)..." ;;
    esac
    SYSTEMD_ARGS="${SYSTEMD_ARGS} \\${NL}    $(systemd_quote "$1")"
    OPENRC_ARGS="${OPENRC_ARGS} $(sh_quote "$1")"
}

# --- flags ---
need_value() {
    [ "$2" -ge 2 ] || fatal "$1 needs a value"
}

parse_args() {
    case $1 in
        agent|server)
            CMD=$1
            shift
            ;;
        -h|--help)
            usage
            exit 0
            ;;
        '')
            fatal 'name the service to install: sh install.sh agent --server https://SERVER:6443 ..., or sh install.sh server'
            ;;
        *)
            fatal "unknown service \"$1\": use agent or server"
            ;;
    esac
    while [ $# -gt 0 ]; do
        case $1 in
            --server)
                need_value "$1" $#
                [ "$CMD" = agent ] || fatal '--server is an agent flag (a server downloads its binary from DROVER_URL)'
                URL=$2
                shift 2
                ;;
            --server=*)
                [ "$CMD" = agent ] || fatal '--server is an agent flag (a server downloads its binary from DROVER_URL)'
                URL=${1#--server=}
                shift
                ;;
            --token)
                need_value "$1" $#
                TOKEN=$2
                TOKEN_ON_ARGV=true
                shift 2
                ;;
            --token=*)
                TOKEN=${1#--token=}
                TOKEN_ON_ARGV=true
                shift
                ;;
            --token-file)
                need_value "$1" $#
                TOKEN_SOURCE_FILE=$2
                shift 2
                ;;
            --token-file=*)
                TOKEN_SOURCE_FILE=${1#--token-file=}
                shift
                ;;
            --images)
                need_value "$1" $#
                IMAGES_DIR=$2
                shift 2
                ;;
            --images=*)
                IMAGES_DIR=${1#--images=}
                shift
                ;;
            --install-runtime)
                INSTALL_RUNTIME=true
                shift
                ;;
            --no-start)
                SKIP_START=true
                shift
                ;;
            -h|--help)
                usage
                exit 0
                ;;
            --runtime|--state-dir)
                need_value "$1" $#
                if [ "$1" = --runtime ]; then RUNTIME=$2; else AGENT_STATE_DIR=$2; fi
                pass_arg "$1"
                pass_arg "$2"
                shift 2
                ;;
            --runtime=*|--state-dir=*)
                case $1 in
                    --runtime=*) RUNTIME=${1#--runtime=} ;;
                    *) AGENT_STATE_DIR=${1#--state-dir=} ;;
                esac
                pass_arg "$1"
                shift
                ;;
            --tls-server-name)
                need_value "$1" $#
                TLS_NAME=$2
                pass_arg "$1"
                pass_arg "$2"
                shift 2
                ;;
            --tls-server-name=*)
                TLS_NAME=${1#--tls-server-name=}
                pass_arg "$1"
                shift
                ;;
            --disable-agent)
                DISABLE_AGENT=true
                pass_arg "$1"
                shift
                ;;
            *)
                pass_arg "$1"
                shift
                ;;
        esac
    done
    if [ "${TOKEN_ON_ARGV:-false}" = true ]; then
        warn '--token: while this installer runs, its command line (with the token) is visible in ps; DROVER_TOKEN or DROVER_TOKEN_FILE are not'
    fi
    case $RUNTIME in
        auto|podman|nerdctl) ;;
        *) fatal "--runtime \"${RUNTIME}\" is not a runtime: use auto, podman or nerdctl" ;;
    esac
    if [ -n "$IMAGES_DIR" ] && [ "$CMD" != agent ]; then
        fatal '--images is an agent flag (the images a device runs)'
    fi
}

# --- who, where ---
setup_env() {
    if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
        fatal 'run the installer as root: curl -sfL ... | sudo sh -s - ...'
    fi
    SERVICE=drover-${CMD}
    ENV_FILE=${CONF_DIR}/${SERVICE}.env
    URL=${URL%/}
    if [ "$CMD" = agent ] && [ -z "$URL" ]; then
        fatal 'agent: --server https://SERVER:6443 (or DROVER_URL) is needed'
    fi
    case $URL in
        ''|https://*) ;;
        http://*)
            if [ -z "${INSTALL_DROVER_BINARY}" ] && [ "${INSTALL_DROVER_SKIP_DOWNLOAD}" != true ]; then
                fatal "${URL} is plain http: a download from it cannot be checked; use the server's https URL, or install offline with INSTALL_DROVER_BINARY"
            fi
            warn "${URL} is plain http (a server started with --insecure): the join token will cross the network in clear"
            ;;
        *) fatal "the server URL must start with https:// (have \"${URL}\")" ;;
    esac
    hostport=${URL#*://}
    hostport=${hostport%%/*}
    case $hostport in
        \[*\]:*|[!\[]*:*) URL_HOST=${hostport%:*} URL_PORT=${hostport##*:} ;;
        *) URL_HOST=$hostport URL_PORT=443 ;;
    esac
    if [ "$CMD" = agent ]; then
        pass_arg --server
        pass_arg "$URL"
    fi
}

# --- Linux on amd64, arm64 or armv7 ---
verify_os() {
    os=$(uname -s)
    [ "$os" = Linux ] || fatal "unsupported operating system ${os}: drover runs on Linux"
    OS_NAME=Linux
    if [ -r "${ROOT}/etc/os-release" ]; then
        OS_RELEASE=${ROOT}/etc/os-release
    elif [ -r /etc/os-release ]; then
        OS_RELEASE=/etc/os-release
    else
        OS_RELEASE=
    fi
    if [ -n "$OS_RELEASE" ]; then
        # Read, not sourced: the file is data.
        OS_ID=$(sed -n 's/^ID=//p' "$OS_RELEASE" | tr -d "\"'" | head -n 1)
        OS_NAME=$(sed -n 's/^PRETTY_NAME=//p' "$OS_RELEASE" | tr -d "\"'" | head -n 1)
        [ -n "$OS_NAME" ] || OS_NAME=${OS_ID:-Linux}
    else
        warn 'no /etc/os-release: the distribution is unknown (only --install-runtime needs it)'
    fi
}

setup_verify_arch() {
    machine=${INSTALL_DROVER_ARCH:-$(uname -m)}
    case $machine in
        amd64|x86_64) ARCH=amd64 ;;
        arm64|aarch64|armv8*) ARCH=arm64 ;;
        arm|armv7*|armhf) ARCH=arm ;;
        *) fatal "unsupported architecture ${machine}: drover runs on amd64 (x86_64), arm64 (aarch64) and arm (armv7l)" ;;
    esac
    # 32-bit Raspberry Pi OS may boot a 64-bit kernel: uname says aarch64, but only armhf programs run.
    if [ "$ARCH" = arm64 ] && [ -z "${INSTALL_DROVER_ARCH:-}" ]; then
        userland=
        if command -v dpkg >/dev/null 2>&1; then
            userland=$(dpkg --print-architecture 2>/dev/null || true)
        fi
        if [ "$userland" = armhf ] || { [ -z "$userland" ] && [ ! -e /lib/ld-linux-aarch64.so.1 ] && [ -e /lib/ld-linux-armhf.so.3 ]; }; then
            info 'A 64-bit kernel with a 32-bit (armhf) userland: installing the arm build'
            ARCH=arm
        fi
    fi
    BIN_NAME=drover-linux-${ARCH}
    info "Detected ${OS_NAME} on ${ARCH}"
}

# --- systemd or OpenRC ---
verify_init() {
    case ${INSTALL_DROVER_INIT:-} in
        systemd|openrc) INIT=${INSTALL_DROVER_INIT} ;;
        '')
            if command -v openrc-run >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then
                INIT=openrc
            elif command -v systemctl >/dev/null 2>&1; then
                INIT=systemd
            else
                fatal 'neither systemd (systemctl) nor OpenRC (openrc-run) found to run drover as a service'
            fi
            ;;
        *) fatal "INSTALL_DROVER_INIT=${INSTALL_DROVER_INIT}: use systemd or openrc" ;;
    esac
    if [ "$INIT" = systemd ]; then
        SERVICE_FILE=${SYSTEMD_DIR}/${SERVICE}.service
    else
        SERVICE_FILE=/etc/init.d/${SERVICE}
        LOG_FILE=/var/log/${SERVICE}.log
        LOGROTATE_FILE=/etc/logrotate.d/${SERVICE}
    fi
}

# --- a container runtime for the agent (the server runs one too unless --disable-agent) ---
package_manager() {
    for pm in apt-get dnf yum apk zypper; do
        if command -v "$pm" >/dev/null 2>&1; then
            echo "$pm"
            return 0
        fi
    done
    return 1
}

verify_runtime() {
    if [ "$CMD" = server ] && [ "$DISABLE_AGENT" = true ]; then
        return 0
    fi
    case $RUNTIME in
        podman) wanted=podman ;;
        nerdctl) wanted=nerdctl ;;
        *) wanted='podman nerdctl' ;;
    esac
    # Memory limits of pods need the memory controller (often off on a Raspberry Pi's kernel command line).
    if ! grep -qs memory /sys/fs/cgroup/cgroup.controllers && [ "$(awk '$1 == "memory" { print $4 }' /proc/cgroups 2>/dev/null)" != 1 ]; then
        warn 'no memory cgroup: pods'"'"' memory limits cannot apply; on a Raspberry Pi add "cgroup_memory=1 cgroup_enable=memory" to /boot/firmware/cmdline.txt (or /boot/cmdline.txt) and reboot'
    fi
    for rt in $wanted; do
        if command -v "$rt" >/dev/null 2>&1; then
            info "Container runtime: $(command -v "$rt")"
            return 0
        fi
    done
    if [ "$RUNTIME" = nerdctl ]; then
        fatal 'nerdctl is not on PATH and is not packaged by the usual distributions: install containerd and nerdctl (see firmware-notes/nerdctl.md), or use --runtime podman'
    fi
    if [ "$INSTALL_RUNTIME" != true ]; then
        if [ "$RUNTIME" = podman ]; then
            fatal 'podman is not on PATH: install it (apt-get install podman), or re-run with --install-runtime'
        fi
        fatal 'no container runtime: neither podman nor nerdctl is on PATH; install podman (apt-get install podman), or re-run with --install-runtime'
    fi
    PM=$(package_manager) || fatal '--install-runtime: no known package manager (apt-get, dnf, yum, apk, zypper); install podman yourself'
    NEED_RUNTIME_INSTALL=true
}

# Run after the download is verified, so a failed download installs nothing.
install_runtime() {
    [ "${NEED_RUNTIME_INSTALL:-false}" = true ] || return 0
    info "Installing podman with ${PM}"
    case $PM in
        apt-get)
            apt-get update -q >/dev/null || fatal 'apt-get update failed'
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman >/dev/null || fatal 'apt-get install podman failed'
            ;;
        dnf|yum) "$PM" install -y podman >/dev/null || fatal "${PM} install podman failed" ;;
        apk) apk add --no-cache podman >/dev/null || fatal 'apk add podman failed' ;;
        zypper) zypper --non-interactive install podman >/dev/null || fatal 'zypper install podman failed' ;;
    esac
    command -v podman >/dev/null 2>&1 || fatal "${PM} installed podman, but it is not on PATH"
    info "Container runtime: $(command -v podman)"
}

# --- the join token (agent) ---
valid_token() {
    case $1 in
        *"$NL"*) return 1 ;;
    esac
    printf '%s\n' "$1" | grep -Eq '^K10[0-9a-f]{64}::[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{16,256}$'
}

setup_token() {
    CA_HASH=
    if [ "$CMD" != agent ] && [ -z "$TOKEN" ] && [ -z "$TOKEN_SOURCE_FILE" ]; then
        return 0
    fi
    if [ -z "$TOKEN" ] && [ -n "$TOKEN_SOURCE_FILE" ]; then
        [ -r "$TOKEN_SOURCE_FILE" ] || fatal "cannot read the token file ${TOKEN_SOURCE_FILE}"
        TOKEN=$(cat "$TOKEN_SOURCE_FILE")
    fi
    # Surrounding blanks come with copies and pastes.
    TOKEN=$(printf '%s' "$TOKEN" | tr -d ' \t\r')
    if [ -z "$TOKEN" ]; then
        if [ -s "${ROOT}${TOKEN_FILE}" ]; then
            TOKEN=$(cat "${ROOT}${TOKEN_FILE}")
            KEEP_TOKEN=true
        elif [ -s "${ROOT}${AGENT_STATE_DIR}/credentials/node.crt" ]; then
            # Joined already: its certificate is its identity, no token is needed again.
            return 0
        else
            fatal 'agent: a join token is needed (DROVER_TOKEN, DROVER_TOKEN_FILE, --token-file or --token; on the server: drover token create)'
        fi
    fi
    if [ "$CMD" = agent ]; then
        # A joined node without a token file gets no --token-file: the agent would refuse a missing file.
        pass_arg --token-file
        pass_arg "$TOKEN_FILE"
    fi
    valid_token "$TOKEN" || fatal 'the join token is not valid: expected K10<64 hex digits of the CA hash>::<id>.<secret> (from the server'"'"'s DATA_DIR/join-token, or: drover token create)'
    CA_HASH=$(printf '%s' "$TOKEN" | cut -c 4-67)
}

# --- downloads ---
setup_tmp() {
    TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/drover-install.XXXXXXXXXX")
}

cleanup() {
    code=$?
    set +e
    trap - EXIT
    [ -n "$TMP_DIR" ] && rm -rf "$TMP_DIR"
    [ -n "${BIN_TMP:-}" ] && rm -f "$BIN_TMP"
    [ -n "${TOKEN_TMP:-}" ] && rm -f "$TOKEN_TMP"
    if [ "$code" -ne 0 ] && [ "$WRITING" = true ] && [ -n "$CREATED" ]; then
        warn 'removing what this run had created'
        # Newest first: files before the directories that hold them.
        printf '%s\n' "$CREATED" | sed '/^$/d' | sort -r | while IFS= read -r p; do
            if [ -d "$p" ]; then rmdir "$p" 2>/dev/null; else rm -f "$p"; fi
        done
    fi
    exit "$code"
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    else
        openssl dgst -sha256 "$1" | sed 's/^.*= *//'
    fi
}

verify_downloader() {
    # Without these the CA and checksum checks below fail with misleading messages.
    for tool in awk sed tr cut; do
        command -v "${tool}" >/dev/null 2>&1 || fatal "${tool} is not on PATH: install.sh needs it to check the download"
    done
    if command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1 || command -v openssl >/dev/null 2>&1; then :; else
        fatal 'no sha256sum, shasum or openssl to check the download with'
    fi
    if command -v curl >/dev/null 2>&1; then
        DOWNLOADER=curl
    elif command -v wget >/dev/null 2>&1 && wget --version 2>/dev/null | grep -q 'GNU Wget'; then
        [ -z "$TLS_NAME" ] || fatal '--tls-server-name needs curl to download drover (wget cannot connect to one name and check another)'
        DOWNLOADER=wget
    else
        # busybox wget cannot be told which CA to trust.
        fatal 'curl (or GNU wget) is needed to download drover; install curl, or install offline with INSTALL_DROVER_BINARY'
    fi
}

# download OUT PATH [CAFILE]: ${URL}PATH into OUT. Without CAFILE the server's certificate is not
# checked (only for /cacerts, whose hash is then compared with the token's).
download() {
    out=$1
    url=${URL}$2
    cafile=${3:-}
    status=0
    cert_hint="use an address its certificate names, --tls-server-name NAME (a name it does hold), or restart the server with --tls-san ${URL_HOST}"
    case $DOWNLOADER in
        curl)
            set -- -sS --proto '=https' --connect-timeout 15 --retry 3 --retry-delay 2 -o "$out" -w '%{http_code}'
            if [ -n "$cafile" ]; then
                set -- "$@" --cacert "$cafile"
            else
                set -- "$@" --insecure
            fi
            target=$url
            if [ -n "$TLS_NAME" ]; then
                # As the agent does: the certificate is checked against TLS_NAME, the connection goes to the URL's host.
                set -- "$@" --connect-to "${TLS_NAME}:${URL_PORT}:${URL_HOST}:${URL_PORT}"
                target=https://${TLS_NAME}:${URL_PORT}${url#"${URL}"}
            fi
            code=$(curl "$@" "$target" 2>"${TMP_DIR}/err") || status=$?
            if [ "$status" -ne 0 ]; then
                why=$(head -n 1 "${TMP_DIR}/err" | sed 's/^curl: ([0-9]*) //')
                case $status in
                    51|60) fatal "cannot download ${url}: the server's certificate does not match its address or its CA (${why}); ${cert_hint}" ;;
                    *) fatal "cannot download ${url}: ${why:-curl exit ${status}}" ;;
                esac
            fi
            if [ "$code" != 200 ]; then
                msg=$(sed -n 's/.*"message":"\([^"]*\)".*/\1/p' "$out" 2>/dev/null | head -n 1)
                fatal "cannot download ${url}: HTTP ${code}${msg:+: ${msg}}"
            fi
            ;;
        wget)
            if [ -n "$cafile" ]; then
                wget -q -T 15 -t 3 --https-only --ca-certificate="$cafile" -O "$out" "$url" 2>"${TMP_DIR}/err" || status=$?
            else
                wget -q -T 15 -t 3 --https-only --no-check-certificate -O "$out" "$url" 2>"${TMP_DIR}/err" || status=$?
            fi
            case $status in
                0) ;;
                5) fatal "cannot download ${url}: the server's certificate does not match its address or its CA; ${cert_hint}" ;;
                8) fatal "cannot download ${url}: the server answered with an error (is ${BIN_NAME} in its downloads dir?)" ;;
                *) fatal "cannot download ${url}: wget exit ${status}" ;;
            esac
            ;;
    esac
}

# sha256 of a PEM certificate's DER: what the token's CA hash is of.
cert_der_sha256() {
    awk '/-----BEGIN CERTIFICATE-----/ { f = 1; next } /-----END CERTIFICATE-----/ { exit } f' "$1" | tr -d ' \t\r\n' >"${TMP_DIR}/ca.b64"
    [ -s "${TMP_DIR}/ca.b64" ] || return 1
    if command -v openssl >/dev/null 2>&1; then
        openssl x509 -in "$1" -outform der -out "${TMP_DIR}/ca.der" 2>/dev/null || return 1
    else
        base64 -d <"${TMP_DIR}/ca.b64" >"${TMP_DIR}/ca.der" 2>/dev/null || return 1
    fi
    sha256_of "${TMP_DIR}/ca.der"
}

# The CA to check the server against: fetched and compared with the token's hash, or the one the
# agent got when it joined.
trusted_ca() {
    CA_FILE=${TMP_DIR}/ca.crt
    if [ -n "$CA_HASH" ]; then
        download "$CA_FILE" /cacerts
        got=$(cert_der_sha256 "$CA_FILE") || fatal "the server at ${URL} did not send a CA certificate at /cacerts; nothing was downloaded"
        if [ "$got" != "$CA_HASH" ]; then
            fatal "the server at ${URL} presents CA sha256 ${got}, but the join token expects ${CA_HASH}: wrong server or someone in between; nothing was downloaded"
        fi
        info "The server's CA matches the join token (sha256 ${got})"
    elif [ -s "${ROOT}${AGENT_STATE_DIR}/credentials/ca.crt" ]; then
        cp "${ROOT}${AGENT_STATE_DIR}/credentials/ca.crt" "$CA_FILE"
        info "Trusting the CA this node joined with (${AGENT_STATE_DIR}/credentials/ca.crt)"
    else
        fatal 'a join token is needed to check the server the binary comes from (DROVER_TOKEN or DROVER_TOKEN_FILE)'
    fi
}

expected_hash() {
    # sha256sum format: "<hex>  name" or "<hex> *name".
    awk -v n="$2" '$2 == n || $2 == "*" n { print $1; exit }' "$1"
}

# --- the binary: downloaded (or given) into the temp dir and checked, nothing written yet ---
obtain_binary() {
    TMP_BIN=${TMP_DIR}/drover
    if [ "${INSTALL_DROVER_SKIP_DOWNLOAD:-}" = true ]; then
        [ -x "${ROOT}${BIN_DIR}/drover" ] || fatal "INSTALL_DROVER_SKIP_DOWNLOAD=true, but there is no executable ${BIN_DIR}/drover"
        info "Keeping the installed ${BIN_DIR}/drover"
        TMP_BIN=
        return 0
    fi
    if [ -n "${INSTALL_DROVER_BINARY:-}" ]; then
        [ -f "$INSTALL_DROVER_BINARY" ] || fatal "INSTALL_DROVER_BINARY=${INSTALL_DROVER_BINARY}: no such file"
        cp "$INSTALL_DROVER_BINARY" "$TMP_BIN" || fatal "cannot copy ${INSTALL_DROVER_BINARY} to ${TMP_DIR} (set TMPDIR to a directory with room)"
        sums=$(dirname "$INSTALL_DROVER_BINARY")/SHA256SUMS
        want=
        if [ -r "$sums" ]; then
            want=$(expected_hash "$sums" "$(basename "$INSTALL_DROVER_BINARY")")
            [ -n "$want" ] || want=$(expected_hash "$sums" "$BIN_NAME")
        fi
        if [ -n "$want" ]; then
            HASH_EXPECTED=$want
            verify_binary_hash "${sums}"
        else
            warn "no SHA256SUMS line for $(basename "$INSTALL_DROVER_BINARY") beside it: its checksum is not verified"
        fi
    else
        [ -n "$URL" ] || fatal "server: give the binary (INSTALL_DROVER_BINARY=./${BIN_NAME}) or a drover server to download it from (DROVER_URL and DROVER_TOKEN)"
        verify_downloader
        trusted_ca
        info "Downloading ${URL}/download/SHA256SUMS"
        download "${TMP_DIR}/SHA256SUMS" /download/SHA256SUMS "$CA_FILE"
        HASH_EXPECTED=$(expected_hash "${TMP_DIR}/SHA256SUMS" "$BIN_NAME")
        [ -n "$HASH_EXPECTED" ] || fatal "the server has no ${BIN_NAME} (its SHA256SUMS does not list it): put ${BIN_NAME} in its downloads dir (drover server --downloads-dir)"
        if [ -x "${ROOT}${BIN_DIR}/drover" ] && [ "$(sha256_of "${ROOT}${BIN_DIR}/drover")" = "$HASH_EXPECTED" ]; then
            info "${BIN_DIR}/drover is already this version (sha256 ${HASH_EXPECTED})"
            TMP_BIN=
            return 0
        fi
        info "Downloading ${URL}/download/${BIN_NAME}"
        download "$TMP_BIN" "/download/${BIN_NAME}" "$CA_FILE"
        verify_binary_hash "${URL}/download/SHA256SUMS"
    fi
    chmod 0755 "$TMP_BIN"
    # Proves it runs here (a glibc binary on musl, or the wrong arch, fails now, before anything is written).
    if ! version=$("$TMP_BIN" --version 2>"${TMP_DIR}/err"); then
        why=$(head -n 1 "${TMP_DIR}/err")
        case $why in
            *'Permission denied'*) fatal "the ${BIN_NAME} binary cannot be run from ${TMP_DIR}: ${why} (a noexec temp dir? set TMPDIR to another directory)" ;;
            *) fatal "the ${BIN_NAME} binary does not run on this machine: ${why} (drover's binary needs glibc: Alpine/musl cannot run it)" ;;
        esac
    fi
    info "drover ${version}"
}

verify_binary_hash() {
    got=$(sha256_of "$TMP_BIN")
    if [ "$got" != "$HASH_EXPECTED" ]; then
        fatal "${BIN_NAME}: sha256 ${got} does not match ${HASH_EXPECTED} in ${1}; nothing was installed"
    fi
    info "Verified sha256 ${got}"
}

# --- writing: every file made whole beside its target, then moved into place ---
mark_created() {
    CREATED="${CREATED}${NL}$1"
}

make_dir() {
    # make_dir PATH MODE: each missing level is remembered, so a failed run removes what it made.
    d=${ROOT}$1
    missing=
    p=$d
    while [ -n "$p" ] && [ "$p" != / ] && [ ! -d "$p" ]; do
        missing="$p${NL}${missing}"
        p=$(dirname "$p")
    done
    if [ -n "$missing" ]; then
        mkdir -p "$d" 2>/dev/null || fatal "cannot create the directory ${1}"
        chmod "$2" "$d"
        old_ifs=$IFS
        IFS=$NL
        for m in $missing; do
            mark_created "$m"
        done
        IFS=$old_ifs
    fi
}

# put_file PATH MODE SOURCE: SOURCE (made in the temp dir) copied beside PATH, then moved onto it.
put_file() {
    target=${ROOT}$1
    make_dir "$(dirname "$1")" 0755
    tmp=$(mktemp "$(dirname "$target")/.$(basename "$target").XXXXXX" 2>/dev/null) || fatal "cannot write ${1}"
    if ! cat "$3" >"$tmp" || ! chmod "$2" "$tmp"; then
        rm -f "$tmp"
        fatal "cannot write ${1}"
    fi
    [ -e "$target" ] || mark_created "$target"
    mv -f "$tmp" "$target" || fatal "cannot replace ${1}"
}

install_binary() {
    make_dir "$BIN_DIR" 0755
    if [ -z "$TMP_BIN" ]; then
        return 0
    fi
    info "Installing drover to ${BIN_DIR}/drover"
    BIN_TMP=$(mktemp "${ROOT}${BIN_DIR}/.drover.XXXXXX" 2>/dev/null) || fatal "cannot write ${BIN_DIR}/drover"
    cp "$TMP_BIN" "$BIN_TMP" || fatal "cannot write ${BIN_DIR}/drover (disk full?)"
    chmod 0755 "$BIN_TMP"
    [ -e "${ROOT}${BIN_DIR}/drover" ] || mark_created "${ROOT}${BIN_DIR}/drover"
    mv -f "$BIN_TMP" "${ROOT}${BIN_DIR}/drover" || fatal "cannot replace ${BIN_DIR}/drover"
    BIN_TMP=
}

write_token() {
    [ "$CMD" = agent ] || return 0
    [ -n "$TOKEN" ] || return 0
    [ "${KEEP_TOKEN:-false}" = true ] && return 0
    make_dir "$CONF_DIR" 0700
    info "Writing the join token to ${TOKEN_FILE} (0600)"
    # umask first, so the token is never readable by others, not even for a moment; printf is a builtin (no argv).
    old_umask=$(umask)
    umask 077
    TOKEN_TMP=$(mktemp "${ROOT}${CONF_DIR}/.agent-token.XXXXXX" 2>/dev/null) || fatal "cannot write ${TOKEN_FILE}"
    printf '%s\n' "$TOKEN" >"$TOKEN_TMP"
    chmod 0600 "$TOKEN_TMP"
    umask "$old_umask"
    [ -e "${ROOT}${TOKEN_FILE}" ] || mark_created "${ROOT}${TOKEN_FILE}"
    mv -f "$TOKEN_TMP" "${ROOT}${TOKEN_FILE}" || fatal "cannot replace ${TOKEN_FILE}"
    TOKEN_TMP=
}

write_env_file() {
    make_dir "$CONF_DIR" 0700
    {
        echo "# Environment of ${SERVICE}, written by install.sh (proxies for image pulls)."
        for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
            eval "val=\${$v:-}"
            [ -n "$val" ] || continue
            case $val in
                *[\"\\\$\`"$NL"]*) warn "${v} holds quotes, \$ or backslashes: not written to ${ENV_FILE}" ;;
                *) printf '%s="%s"\n' "$v" "$val" ;;
            esac
        done
    } >"${TMP_DIR}/env"
    put_file "$ENV_FILE" 0600 "${TMP_DIR}/env"
}

# The server's V8 young generation capped at 8 MiB per semi-space (default 16). At 2 MiB (the cap until the server
# gave its heap back when idle, src/util/idle-gc.ts) each API create cost ~8 % more CPU; at 8 the young generation a
# burst grew is given back at rest all the same (server + local agent idle with 50 pods 85.9 MiB, at 2: 84.5;
# bench/results/issue13-s29.md). An EnvironmentFile's NODE_OPTIONS wins.
SERVER_NODE_OPTIONS=--max-semi-space-size=8
# glibc's malloc told to give freed memory back (trim the heap top beyond 64 KiB, no padding): with its default,
# adaptive thresholds the server at 1,000 idle agents kept ~12 MiB more of freed TLS and socket buffers resident
# (bench/results/issue13-s26.md). An EnvironmentFile's GLIBC_TUNABLES wins.
SERVER_MALLOC_TUNABLES=glibc.malloc.trim_threshold=65536:glibc.malloc.top_pad=0

systemd_unit() {
    SERVER_NODE_ENV=
    [ "$CMD" = server ] && SERVER_NODE_ENV="Environment=NODE_OPTIONS=${SERVER_NODE_OPTIONS}
Environment=GLIBC_TUNABLES=${SERVER_MALLOC_TUNABLES}
"
    cat <<EOF
[Unit]
Description=drover ${CMD} (edge container orchestrator)
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=simple
${SERVER_NODE_ENV}EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${ENV_FILE}
# Only drover is stopped: the containers it started keep running across restarts and upgrades.
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=${BIN_DIR}/drover ${CMD}${SYSTEMD_ARGS}
EOF
}

openrc_script() {
    SERVER_EXPORTS=
    # The server's defaults, unless /etc/conf.d/drover-server (read before this script runs) set them: the $ is the
    # service script's, not this one's.
    # shellcheck disable=SC2016
    [ "$CMD" = server ] && SERVER_EXPORTS=$(printf 'export NODE_OPTIONS="${NODE_OPTIONS:-%s}"\nexport GLIBC_TUNABLES="${GLIBC_TUNABLES:-%s}"' "$SERVER_NODE_OPTIONS" "$SERVER_MALLOC_TUNABLES")
    cat <<EOF
#!/sbin/openrc-run
# drover ${CMD}, written by install.sh

description="drover ${CMD} (edge container orchestrator)"

depend() {
    need net
    after network-online firewall
    want cgroups
}

supervisor=supervise-daemon
name=${SERVICE}
command="${BIN_DIR}/drover"
command_args="${CMD} $(escape_dq "${OPENRC_ARGS# }")"
output_log=${LOG_FILE}
error_log=${LOG_FILE}
pidfile="/run/${SERVICE}.pid"
respawn_delay=5
respawn_max=0

${SERVER_EXPORTS}
set -o allexport
if [ -f ${ENV_FILE} ]; then . ${ENV_FILE}; fi
set +o allexport
EOF
}

write_service() {
    if [ "$INIT" = systemd ]; then
        info "systemd: writing ${SERVICE_FILE}"
        systemd_unit >"${TMP_DIR}/service"
        put_file "$SERVICE_FILE" 0644 "${TMP_DIR}/service"
    else
        info "openrc: writing ${SERVICE_FILE}"
        openrc_script >"${TMP_DIR}/service"
        put_file "$SERVICE_FILE" 0755 "${TMP_DIR}/service"
        printf '%s {\n\tmissingok\n\tnotifempty\n\tcopytruncate\n}\n' "$LOG_FILE" >"${TMP_DIR}/logrotate"
        put_file "$LOGROTATE_FILE" 0644 "${TMP_DIR}/logrotate"
    fi
}

write_uninstall() {
    info "Writing the uninstall script ${UNINSTALL_SH}"
    {
        cat <<EOF
#!/bin/sh
# Removes what drover's install.sh made: the services, the binary, the token and this script.
# --purge also removes /var/lib/drover (node identity, cache, server data), /etc/drover and the
# containers drover started.
set -e
set -o noglob
ROOT=$(sh_quote "$ROOT")
BIN_DIR=$(sh_quote "$BIN_DIR")
SYSTEMD_DIR=$(sh_quote "$SYSTEMD_DIR")
EOF
        cat <<'EOF'
info() { echo '[INFO] ' "$@"; }
warn() { echo '[WARN] ' "$@" >&2; }
fatal() { echo '[ERROR] ' "$@" >&2; exit 1; }

PURGE=false
for a in "$@"; do
    case $a in
        --purge) PURGE=true ;;
        -h|--help) echo 'usage: drover-uninstall.sh [--purge]   (--purge: also /var/lib/drover, /etc/drover and drover'"'"'s containers)'; exit 0 ;;
        *) fatal "unknown option ${a} (use --purge)" ;;
    esac
done
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    fatal 'run as root: sudo drover-uninstall.sh'
fi

reload=false
for svc in drover-agent drover-server; do
    if [ -f "${ROOT}${SYSTEMD_DIR}/${svc}.service" ]; then
        info "systemd: stopping and removing ${svc}"
        systemctl stop "$svc" >/dev/null 2>&1 || warn "systemctl stop ${svc} failed"
        systemctl disable "$svc" >/dev/null 2>&1 || true
        systemctl reset-failed "$svc" >/dev/null 2>&1 || true
        rm -f "${ROOT}${SYSTEMD_DIR}/${svc}.service"
        reload=true
    fi
    if [ -f "${ROOT}/etc/init.d/${svc}" ]; then
        info "openrc: stopping and removing ${svc}"
        rc-service "$svc" stop >/dev/null 2>&1 || warn "rc-service ${svc} stop failed"
        rc-update delete "$svc" default >/dev/null 2>&1 || true
        rm -f "${ROOT}/etc/init.d/${svc}" "${ROOT}/etc/logrotate.d/${svc}"
    fi
    rm -f "${ROOT}/etc/drover/${svc}.env"
done
if [ "$reload" = true ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
rm -f "${ROOT}/etc/drover/agent-token" "${ROOT}${BIN_DIR}/drover"

if [ "$PURGE" = true ]; then
    # The containers the agent started (KillMode=process let them outlive it).
    for rt in podman nerdctl; do
        command -v "$rt" >/dev/null 2>&1 || continue
        for id in $("$rt" ps -a -q --filter label=drover.io/managed=true 2>/dev/null); do
            "$rt" rm -f "$id" >/dev/null 2>&1 || warn "${rt} rm -f ${id} failed"
        done
    done
    info 'Removing /var/lib/drover and /etc/drover'
    rm -rf "${ROOT}/var/lib/drover" "${ROOT}/etc/drover"
else
    rmdir "${ROOT}/etc/drover" 2>/dev/null || true
    info 'Kept /var/lib/drover (node identity, cache, server data): drover-uninstall.sh --purge removes it'
fi
rm -f "${ROOT}${BIN_DIR}/drover-uninstall.sh"
info 'drover is uninstalled'
EOF
    } >"${TMP_DIR}/uninstall"
    put_file "$UNINSTALL_SH" 0755 "${TMP_DIR}/uninstall"
}

# --- enable and start ---
installed_hashes() {
    for f in "${ROOT}${BIN_DIR}/drover" "${ROOT}${SERVICE_FILE}" "${ROOT}${ENV_FILE}" "${ROOT}${TOKEN_FILE}"; do
        [ -f "$f" ] && sha256_of "$f"
    done
    return 0
}

# --- airgap images: every *.tar of --images DIR, checked before anything is written, loaded after the binary ---
verify_images() {
    [ -n "$IMAGES_DIR" ] || return 0
    [ -d "$IMAGES_DIR" ] || fatal "--images ${IMAGES_DIR}: no such directory"
    if [ ! -r "$IMAGES_DIR" ] || [ ! -x "$IMAGES_DIR" ]; then
        fatal "--images ${IMAGES_DIR}: cannot read the directory"
    fi
    # The list is fixed now, sorted so the loads run in a known order (noglob is on: find lists them).
    IMAGE_FILES=$(find "$IMAGES_DIR" -maxdepth 1 -type f -name '*.tar' | LC_ALL=C sort)
    if [ -z "$IMAGE_FILES" ]; then
        warn "--images ${IMAGES_DIR}: no *.tar file there; nothing to load"
        return 0
    fi
    old_ifs=$IFS
    IFS=$NL
    for f in $IMAGE_FILES; do
        [ -r "$f" ] || fatal "--images: cannot read ${f}"
    done
    IFS=$old_ifs
}

load_images() {
    [ -n "${IMAGE_FILES:-}" ] || return 0
    old_ifs=$IFS
    IFS=$NL
    for f in $IMAGE_FILES; do
        IFS=$old_ifs
        info "Loading image archive ${f}"
        "${ROOT}${BIN_DIR}/drover" image load "$f" --state-dir "${ROOT}${AGENT_STATE_DIR}" --runtime "$RUNTIME" \
            || fatal "drover image load ${f} failed (see above): the archive is damaged or the runtime refused it"
        IFS=$NL
    done
    IFS=$old_ifs
}

enable_and_start() {
    if [ "${INSTALL_DROVER_SKIP_ENABLE:-}" = true ]; then
        info "Not enabling ${SERVICE} (INSTALL_DROVER_SKIP_ENABLE=true)"
        return 0
    fi
    if [ "$INIT" = systemd ]; then
        info "systemd: enabling ${SERVICE}"
        systemctl daemon-reload >/dev/null || fatal 'systemctl daemon-reload failed'
        systemctl enable "${SERVICE}.service" >/dev/null 2>&1 || fatal "systemctl enable ${SERVICE} failed"
    else
        info "openrc: enabling ${SERVICE} in the default runlevel"
        rc-update add "$SERVICE" default >/dev/null || fatal "rc-update add ${SERVICE} failed"
    fi
    if [ "$SKIP_START" = true ]; then
        info "Not starting ${SERVICE} (--no-start)"
        return 0
    fi
    if [ "$PRE_HASHES" = "$(installed_hashes)" ] && [ "${INSTALL_DROVER_FORCE_RESTART:-}" != true ]; then
        if { [ "$INIT" = systemd ] && systemctl is-active --quiet "$SERVICE"; } || { [ "$INIT" = openrc ] && rc-service "$SERVICE" status >/dev/null 2>&1; }; then
            info "Nothing changed: ${SERVICE} keeps running"
            return 0
        fi
    fi
    info "Starting ${SERVICE}"
    if [ "$INIT" = systemd ]; then
        systemctl restart "$SERVICE" || fatal "systemctl restart ${SERVICE} failed: see journalctl -u ${SERVICE}"
    else
        rc-service "$SERVICE" restart || fatal "rc-service ${SERVICE} restart failed: see ${LOG_FILE}"
    fi
}

# --- run ---
{
    parse_args "$@"
    setup_env
    verify_os
    setup_verify_arch
    verify_init
    verify_runtime
    verify_images
    setup_token
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP
    setup_tmp
    obtain_binary
    install_runtime
    PRE_HASHES=$(installed_hashes)
    WRITING=true
    install_binary
    load_images
    write_token
    write_env_file
    write_service
    write_uninstall
    enable_and_start
    WRITING=false
    info "drover ${CMD} installed$([ "$SKIP_START" = true ] && echo ' (not started)'); uninstall: ${UNINSTALL_SH}"
}
