# shellcheck shell=bash
# Shared setup steps for scripts/test and scripts/serve. Source it; do not run it.
#
# Every step is idempotent: it checks first, prints one short line, and only
# installs or starts what is missing. Anything that cannot be done is fatal.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="$REPO_ROOT/.venv"
VENV_STAMP="$VENV_DIR/.async-code-installed"
DOCKERD_LOG="${TMPDIR:-/tmp}/async-code-dockerd.log"
DOCKERD_LOCK="${TMPDIR:-/tmp}/async-code-dockerd.lock"
DOCKERD_PIDFILE=/var/run/docker.pid
DOCKERD_WAIT_SECONDS=60

export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# True when the Docker engine answers (bounded, in case a daemon hangs).
docker_ok() {
    command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1
}

pkg_installed() {
    command -v dpkg-query >/dev/null 2>&1 &&
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- system packages ---------------------------------------------------------

MISSING_PKGS=()

# need_command PACKAGE COMMAND: PACKAGE is required unless COMMAND exists.
need_command() {
    command -v "$2" >/dev/null 2>&1 || MISSING_PKGS+=("$1")
}

# need_file PACKAGE PATH: PACKAGE is required unless PATH exists.
need_file() {
    [ -e "$2" ] || MISSING_PKGS+=("$1")
}

# The test sandbox image is FROM scratch, so /bin/busybox must be the static
# build (Debian: busybox-static; the plain busybox package is dynamic).
need_static_busybox() {
    if pkg_installed busybox-static; then
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1 && [ -x /bin/busybox ]; then
        return 0 # not Debian: trust /bin/busybox; the image smoke test checks it
    fi
    MISSING_PKGS+=(busybox-static)
}

# A Docker engine is needed; nothing to install when one already answers.
need_docker_engine() {
    if docker_ok; then
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        MISSING_PKGS+=(docker.io)
    fi
}

# Install everything collected by the need_* helpers with one apt-get run.
install_missing() {
    if [ "${#MISSING_PKGS[@]}" -eq 0 ]; then
        say "system packages: present"
        return 0
    fi
    local pkgs="${MISSING_PKGS[*]}"
    if ! is_root; then
        die "missing system packages: $pkgs
       install them as root (Debian: sudo apt-get install -y $pkgs), or run this script as root"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing system packages: $pkgs (no apt-get here; install them with your package manager)"
    fi
    say "installing system packages: $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq "${MISSING_PKGS[@]}" >/dev/null ||
        die "apt-get install $pkgs failed"
    MISSING_PKGS=()
}

# --- Docker engine -----------------------------------------------------------

# Start dockerd when the engine does not answer. Containers must get no
# network, hence --bridge=none (and no iptables/masquerading to go with it).
ensure_docker_running() {
    if docker_ok; then
        say "docker engine: running"
        return 0
    fi
    if ! is_root; then
        local err
        err="$(docker info 2>&1 >/dev/null | tail -n 3 || true)"
        die "the Docker engine is not reachable:
$err
       start it as root (e.g. sudo dockerd --bridge=none --iptables=false --ip-masq=false,
       or sudo systemctl start docker) and make sure your user may use the socket
       (docker group), or run this script as root"
    fi
    command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed (Debian: apt-get install -y docker.io)"

    # Serialise concurrent starts; fd 9 is closed for dockerd so it never holds the lock.
    exec 9>"$DOCKERD_LOCK"
    flock 9
    if docker_ok; then
        flock -u 9
        exec 9>&-
        say "docker engine: running"
        return 0
    fi
    local pid=""
    if [ -s "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
        say "docker engine: dockerd is running but not answering yet; waiting up to ${DOCKERD_WAIT_SECONDS}s"
    else
        say "docker engine: starting dockerd (log: $DOCKERD_LOG)"
        # setsid: own session, so Ctrl-C on the tests does not stop the engine.
        setsid dockerd --bridge=none --iptables=false --ip-masq=false \
            </dev/null >"$DOCKERD_LOG" 2>&1 9>&- &
        pid=$!
    fi
    local waited=0
    while ! docker_ok; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            flock -u 9
            exec 9>&-
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during start-up (log above: $DOCKERD_LOG)"
        fi
        if [ "$waited" -ge "$DOCKERD_WAIT_SECONDS" ]; then
            flock -u 9
            exec 9>&-
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "the Docker engine did not answer within ${DOCKERD_WAIT_SECONDS}s (log: $DOCKERD_LOG)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    flock -u 9
    exec 9>&-
    say "docker engine: started"
}

# --- Python virtualenv -------------------------------------------------------

# Print the first Python >= 3.11 with a working venv module ($PYTHON wins).
find_python() {
    local candidates=(python3.13 python3.12 python3.11 python3)
    [ -n "${PYTHON:-}" ] && candidates=("$PYTHON")
    local py
    for py in "${candidates[@]}"; do
        command -v "$py" >/dev/null 2>&1 || continue
        "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
        command -v "$py"
        return 0
    done
    return 1
}

# Create .venv when missing or broken; (re)install the package with its test
# extra when pyproject.toml is newer than the last install.
ensure_venv() {
    if [ -e "$VENV_DIR" ] && ! "$VENV_DIR/bin/python" -c '' >/dev/null 2>&1; then
        say "python: .venv is broken; recreating it"
        rm -rf "$VENV_DIR"
    fi
    if [ ! -e "$VENV_DIR" ]; then
        local py
        py="$(find_python)" ||
            die "no Python >= 3.11 with the venv module found (Debian: apt-get install -y python3 python3-venv; or set PYTHON=/path/to/python3)"
        say "python: creating .venv with $py"
        "$py" -m venv "$VENV_DIR" || die "could not create $VENV_DIR"
    fi
    if [ -f "$VENV_STAMP" ] && [ ! "$REPO_ROOT/pyproject.toml" -nt "$VENV_STAMP" ]; then
        say "python: .venv up to date"
        return 0
    fi
    say "python: installing async-code[test] into .venv"
    (cd "$REPO_ROOT" && "$VENV_DIR/bin/python" -m pip install -q -e '.[test]') ||
        die "pip install -e '.[test]' failed"
    touch "$VENV_STAMP"
}

# --- PostgreSQL --------------------------------------------------------------

# The tests run a throwaway PostgreSQL cluster unless ASYNC_CODE_TEST_DATABASE_URL names a
# server; they find initdb on PATH or in Debian's /usr/lib/postgresql/*/bin.
postgres_server_found() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

need_postgres_server() {
    if [ -n "${ASYNC_CODE_TEST_DATABASE_URL:-}" ] || postgres_server_found; then
        return 0
    fi
    MISSING_PKGS+=(postgresql)
}
