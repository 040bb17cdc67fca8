#!/usr/bin/env bash
# Install swtpm-extcap: a virtual environment with the package from this source
# folder, then the package's own `python -m swtpm_extcap install` (launcher, Lua
# plugin, SWTPM profile: the folder rule lives there, once).
# Run ./install.sh --help for the options. Safe to run again (it updates).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: ./install.sh [--deps] [--demo] [--venv DIR] [--system|--personal] [--dir DIR] [--python PY] [--uninstall]

Creates a virtual environment, installs swtpm-extcap from this folder into it
(a copy: the folder may move afterwards), then runs that environment's
`python -m swtpm_extcap install`, which writes into the folders of the
installed Wireshark (as `tshark -G folders` reports them):
  the extcap launcher  Wireshark 4.2+: ~/.local/lib/wireshark/extcap (or the
                       "Personal Extcap path"); 4.0: ~/.config/wireshark/extcap
  the Lua plugin       "Personal Lua Plugins": ~/.local/lib/wireshark/plugins/swtpm.lua
  the SWTPM profile    ~/.config/wireshark/profiles/SWTPM (columns, colors)
Run as root, it uses Wireshark's global folders instead (as --system): Wireshark
4.2 and later load no personal Lua plugin as root, and root's copies in its
personal folders are removed (one copy per Wireshark).

  --venv DIR       virtual environment (default:
                   ${XDG_DATA_HOME:-$HOME/.local/share}/swtpm-extcap/venv,
                   or /opt/swtpm-extcap/venv system-wide)
  --system         Wireshark's global folders (needs root; the default as root)
  --personal       your personal folders, also as root
  --dir DIR        this extcap folder for the launcher instead
  --python PY      interpreter that creates the environment (default: python3, >= 3.9)
  --uninstall      remove launcher, plugin, profile and the virtual environment
  --deps           first install what is missing of tshark, python3-venv,
                   python3-setuptools and python3-wheel with apt-get (sudo when
                   not root); Debian/Ubuntu only
  --demo           at the end, capture from swtpm-demo with tshark (a bundled
                   real log of two VM boots): decoded TPM 2.0 commands
EOF
}

say() { printf 'swtpm-extcap: %s\n' "$*"; }
die() { printf 'swtpm-extcap: error: %s\n' "$*" >&2; exit 1; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=""
SYSTEM=0
PERSONAL=0
EXTCAP_DIR=""
EXTCAP_DIR_ARG=""
PYTHON=${PYTHON:-python3}
UNINSTALL=0
DEPS=0
DEMO=0

while [ $# -gt 0 ]; do
    case "$1" in
        --venv) [ $# -ge 2 ] || die "--venv needs a folder"; VENV=$2; shift 2 ;;
        --venv=*) VENV=${1#--venv=}; shift ;;
        --dir) [ $# -ge 2 ] || die "--dir needs a folder"; EXTCAP_DIR=$2; EXTCAP_DIR_ARG=1; shift 2 ;;
        --dir=*) EXTCAP_DIR=${1#--dir=}; EXTCAP_DIR_ARG=1; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#--python=}; shift ;;
        --system) SYSTEM=1; shift ;;
        --personal) PERSONAL=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --deps) DEPS=1; shift ;;
        --demo) DEMO=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

HOME=${HOME:?HOME is not set}
[ "$SYSTEM$PERSONAL" != 11 ] || die "--system and --personal exclude each other"
# root's Wireshark reads the global folders (4.2+ loads no personal Lua plugin as root)
if [ "$PERSONAL" = 0 ] && [ "$EUID" = 0 ]; then GLOBAL=1; else GLOBAL=$SYSTEM; fi
case "$EXTCAP_DIR" in ""|/*) ;; *) EXTCAP_DIR=$PWD/$EXTCAP_DIR ;; esac
if [ -z "$VENV" ]; then
    if [ "$GLOBAL" = 1 ]; then
        VENV=/opt/swtpm-extcap/venv
    else
        VENV=${XDG_DATA_HOME:-$HOME/.local/share}/swtpm-extcap/venv
    fi
fi
case "$VENV" in /*) ;; *) VENV=$PWD/$VENV ;; esac
VENV=${VENV%/}
case "$VENV" in *[[:space:]]*) die "the venv path '$VENV' has whitespace, which a #! line cannot hold; pick another with --venv" ;; esac

# --- Debian packages (--deps) ------------------------------------------------------
if [ "$DEPS" = 1 ] && [ "$UNINSTALL" = 0 ]; then
    command -v apt-get >/dev/null 2>&1 ||
        die "--deps uses apt-get (Debian/Ubuntu); install tshark and Python 3.9+ with venv support yourself, then run this without --deps"
    MISSING=()
    for pkg in tshark python3-venv python3-setuptools python3-wheel; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || MISSING+=("$pkg")
    done
    if [ ${#MISSING[@]} -gt 0 ]; then
        SUDO=()
        if [ "$(id -u)" != 0 ]; then
            command -v sudo >/dev/null 2>&1 || die "installing ${MISSING[*]} needs root: run as root or install sudo"
            SUDO=(sudo)
        fi
        say "installing ${MISSING[*]} with apt-get"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null
    else
        say "tshark, python3-venv, python3-setuptools and python3-wheel are installed"
    fi
    if [ "$PYTHON" = python3 ] && [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; fi
fi

# --- Wireshark: there must be one (its folders are the package's business) ------
NO_WS="Wireshark not found (neither tshark nor wireshark on PATH); install it, e.g. 'sudo apt install tshark' on Debian/Ubuntu, then run this again"
INSTALL_ARGS=()
if [ "$SYSTEM" = 1 ]; then INSTALL_ARGS+=(--system); fi
if [ "$PERSONAL" = 1 ]; then INSTALL_ARGS+=(--personal); fi
if [ -n "$EXTCAP_DIR" ]; then INSTALL_ARGS+=(--dir "$EXTCAP_DIR"); fi

# --- uninstall -----------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
    # the environment's package if it is still there, else this checkout's
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import swtpm_extcap.wireshark.install' >/dev/null 2>&1; then
        (cd / && "$VENV/bin/python" -m swtpm_extcap install --uninstall "${INSTALL_ARGS[@]}")
    else
        command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH to run the uninstall; pass --python"
        PYTHONPATH=$SRC "$PYTHON" -m swtpm_extcap install --uninstall "${INSTALL_ARGS[@]}"
    fi
    if [ -f "$VENV/pyvenv.cfg" ]; then
        rm -rf -- "$VENV"
        say "removed the virtual environment $VENV"
        if [ "$(basename "$(dirname "$VENV")")" = swtpm-extcap ]; then rmdir -- "$(dirname "$VENV")" 2>/dev/null || true; fi
    elif [ -e "$VENV" ]; then
        say "left $VENV alone: it is not a virtual environment (no pyvenv.cfg)"
    else
        say "no virtual environment at $VENV (nothing to remove)"
    fi
    exit 0
fi
if [ -z "$EXTCAP_DIR" ] && ! command -v tshark >/dev/null 2>&1 && ! command -v wireshark >/dev/null 2>&1; then
    die "$NO_WS"
fi

# --- virtual environment ---------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH; install Python 3.9+ (Debian: sudo apt install python3-venv) or pass --python"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "$PYTHON is older than 3.9; pass --python with a newer one"
PY=$VENV/bin/python
if [ -x "$PY" ] && "$PY" -c 'import sys' >/dev/null 2>&1; then
    say "using the virtual environment $VENV"
else
    if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
        die "$VENV exists and is not a virtual environment; pick another with --venv"
    fi
    mkdir -p -- "$(dirname "$VENV")"
    "$PYTHON" -m venv --clear "$VENV" ||
        die "'$PYTHON -m venv' failed; on Debian/Ubuntu: sudo apt install python3-venv"
    say "created the virtual environment $VENV (Python $("$PY" -c 'import sys; print(sys.version.split()[0])'))"
fi

# --- the package -------------------------------------------------------------------
# Built from a copy of the source, so the checkout stays clean and may move later.
# The wheel comes from the PEP 517 backend of setuptools (>= 61; before 70.1 it also
# needs the wheel package), taken from the environment, else from $PYTHON itself
# (Debian: python3-setuptools, python3-wheel), else from what pip fetches from
# your index. Installing the wheel never looks at an index.
BUILD=$(mktemp -d)
trap 'rm -rf -- "$BUILD"' EXIT
for item in pyproject.toml setup.cfg setup.py MANIFEST.in README.md LICENSE docs swtpm_extcap; do
    if [ -e "$SRC/$item" ]; then cp -R -- "$SRC/$item" "$BUILD/"; fi
done
find "$BUILD" -name __pycache__ -type d -prune -exec rm -rf {} +

can_build() {
    "$1" - >/dev/null 2>&1 <<'PYEOF'
import sys
import setuptools
v = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
if v < (61, 0):
    sys.exit(1)
if v < (70, 1):
    import wheel  # noqa: F401  (provides bdist_wheel)
PYEOF
}
if can_build "$PY"; then
    BUILDER=$PY
elif can_build "$PYTHON"; then
    BUILDER=$(command -v "$PYTHON")
else
    say "no setuptools >= 61 with wheel support at hand; asking pip for setuptools and wheel"
    "$PY" -m pip install --quiet --disable-pip-version-check 'setuptools>=61' wheel ||
        die "pip could not get setuptools and wheel (offline?): connect to the internet, or install them for $PYTHON (Debian: sudo apt install python3-setuptools python3-wheel) and run this again"
    BUILDER=$PY
fi
if ! BUILD_OUT=$(cd "$BUILD" && "$BUILDER" -c 'import sys, setuptools.build_meta as b; b.build_wheel(sys.argv[1])' "$BUILD/dist" 2>&1); then
    printf '%s\n' "$BUILD_OUT" >&2
    die "building swtpm-extcap from $SRC with $BUILDER failed (output above)"
fi
WHEELS=("$BUILD"/dist/*.whl)
[ -f "${WHEELS[0]}" ] || die "building swtpm-extcap from $SRC made no wheel"
if ! PIP_OUT=$("$PY" -m pip install --no-index --no-deps --force-reinstall --quiet --disable-pip-version-check "${WHEELS[0]}" 2>&1); then
    printf '%s\n' "$PIP_OUT" >&2
    die "pip install of ${WHEELS[0]##*/} into $VENV failed (output above)"
fi
# the runtime dependencies (asyncssh, bcrypt: remote capture over SSH) come from PyPI;
# without them every local capture still works, so an offline install goes on
if ! DEP_OUT=$("$PY" -m pip install --quiet --disable-pip-version-check "${WHEELS[0]}" 2>&1); then
    say "could not install the SSH dependencies (offline?): local logs work; for remote capture run: $PY -m pip install 'asyncssh>=2.14' 'bcrypt>=4'"
    [ -z "$DEP_OUT" ] || printf '%s\n' "$DEP_OUT" | tail -n 2 >&2
fi
"$PY" -c 'import swtpm_extcap.cli' || die "installed, but '$PY' cannot import swtpm_extcap.cli"
say "installed swtpm-extcap $("$PY" -c 'import swtpm_extcap; print(swtpm_extcap.__version__)') from $SRC into $VENV"

# --- launcher, Lua plugin, profile: the package's own installer -------------------
(cd / && "$PY" -m swtpm_extcap install "${INSTALL_ARGS[@]}") ||
    die "'$PY -m swtpm_extcap install' failed (its message is above)"

REMOVE_ARGS=" --venv $VENV"
if [ "$SYSTEM" = 1 ]; then REMOVE_ARGS+=" --system"; fi
if [ "$PERSONAL" = 1 ]; then REMOVE_ARGS+=" --personal"; fi
if [ -n "$EXTCAP_DIR_ARG" ]; then REMOVE_ARGS+=" --dir $EXTCAP_DIR"; fi
echo "Remove with: $SRC/install.sh --uninstall$REMOVE_ARGS"

if [ "$DEMO" = 1 ]; then
    if [ -n "$EXTCAP_DIR_ARG" ] || ! command -v tshark >/dev/null 2>&1; then
        say "--demo: run 'tshark -i swtpm-demo' yourself (with --dir, once Wireshark looks in that folder)"
    else
        printf '\n$ tshark -i swtpm-demo -Y tpm -c 120\n'
        tshark -i swtpm-demo -Y tpm -c 120 2>/dev/null ||
            die "tshark -i swtpm-demo failed; 'tshark -D' should list swtpm-demo"
    fi
fi
