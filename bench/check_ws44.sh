#!/usr/bin/env bash
# The install and the Lua plugin on Wireshark 4.4 (Debian 13 "trixie"), as root in a chroot.
#
#   sudo bench/check_ws44.sh [ROOT]      (default ROOT: /var/tmp/swtpm-ws44-root, kept for reruns)
#
# 1. makes a Debian 13 root with `debootstrap --variant=minbase trixie ROOT` (once; ~25 s plus
#    the download) and installs tshark and python3 in it (python3-venv, -setuptools and -wheel
#    too: install.sh builds the package offline with them);
# 2. copies this checkout into ROOT/root/swtpm-extcap and runs the README's `./install.sh`
#    there as root, first with --personal (root's own folders: Wireshark 4.2+ run as root
#    loads no personal Lua plugin, 4.0's init.lua allowed it), then plain: as root it
#    installs into Wireshark's global folders (launcher, Lua plugin, profile) and removes
#    root's personal copies (one copy per Wireshark);
# 3. checks, as root in the chroot: `tshark -D` lists swtpm-demo, `tshark -G plugins` lists
#    swtpm.lua, a converted corpus log decodes (control frames named, responses carrying
#    their command, TPM 1.2 marked), and `tshark -C SWTPM` loads the profile;
# 4. the personal install of an ordinary user (uid 65534, HOME=/tmp/user) beside the
#    system-wide one: both copies load, the plugin registers once (no Lua error), it says
#    so; then alone, after the system-wide uninstall: tshark -D and the plugin as that user.
# 5. the same decode on both: every corpus log and recording (tests/data), converted here,
#    read with the plugin by this machine's tshark (Wireshark 4.0, Lua 5.2) and by the
#    chroot's (4.4, Lua 5.4) as an ordinary user, -T pdml; bench/compare_pdml.py compares
#    every item of the plugin (needs this machine's tshark and python3).
# Prints what it saw; exits non-zero on the first check that fails. Needs root (chroot,
# mount), debootstrap (apt-get install debootstrap) and a Debian mirror.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${1:-/var/tmp/swtpm-ws44-root}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '[ws44] %s\n' "$*"; }
die() { printf '[ws44] FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null 2>&1 || die "no debootstrap: apt-get install debootstrap"

if [ ! -x "$ROOT/usr/bin/tshark" ]; then
    if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
        say "debootstrap --variant=minbase trixie $ROOT"
        start=$SECONDS
        debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 ||
            die "debootstrap failed (log: $ROOT.debootstrap.log)"
        say "debootstrap took $((SECONDS - start)) s"
    fi
    say "apt-get install tshark python3 python3-venv python3-setuptools python3-wheel (in the chroot)"
    start=$SECONDS
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        chroot "$ROOT" debconf-set-selections
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        tshark python3 python3-venv python3-setuptools python3-wheel >/dev/null
    say "apt-get took $((SECONDS - start)) s"
fi

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for fs in proc sys dev; do
    if ! mountpoint -q "$ROOT/$fs"; then
        mount --bind "/$fs" "$ROOT/$fs"
        mounted+=("$ROOT/$fs")
    fi
done

in_root() { chroot "$ROOT" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

say "$(in_root tshark --version | head -n 1 || true)"

# a fresh copy of the checkout (no venvs, no caches), no leftovers of an earlier run
rm -rf "$ROOT/root/.local/lib/wireshark" "$ROOT/root/.config/wireshark" "$ROOT/root/.local/share/swtpm-extcap"
rm -rf "$ROOT/root/swtpm-extcap"
mkdir -p "$ROOT/root/swtpm-extcap"
tar -C "$SRC" --exclude='.venv*' --exclude='__pycache__' --exclude='.git' --exclude='*.egg-info' \
    --exclude='build' -cf - . | tar -C "$ROOT/root/swtpm-extcap" -xf -

say "./install.sh --personal (as root in the chroot): Wireshark 4.2+ leaves the plugin unloaded"
in_root bash /root/swtpm-extcap/install.sh --personal | sed 's/^/    /'
[ -f "$ROOT/root/.local/lib/wireshark/plugins/swtpm.lua" ] || die "no personal plugin for root"
if in_root tshark -G plugins 2>/dev/null | grep -q 'swtpm.lua'; then
    say "    (this Wireshark loads root's personal Lua plugin)"
else
    say "    root's personal swtpm.lua is not loaded, as expected of Wireshark 4.2+"
fi

say "./install.sh (as root in the chroot: the global folders)"
out=$(in_root bash /root/swtpm-extcap/install.sh)
printf '%s\n' "$out" | sed 's/^/    /'
printf '%s\n' "$out" | grep -q "running as root: installing into Wireshark's global folders" ||
    die "the install as root did not say it goes system-wide"
[ ! -e "$ROOT/root/.local/lib/wireshark/plugins/swtpm.lua" ] || die "root's personal plugin is still there"

say "tshark -D"
listing=$(in_root tshark -D 2>/dev/null)
printf '%s\n' "$listing" | grep swtpm | sed 's/^/    /' || true
printf '%s\n' "$listing" | grep -q 'swtpm-demo' || die "tshark -D does not list swtpm-demo"

say "tshark -G plugins | grep swtpm"
plugins=$(in_root tshark -G plugins 2>/dev/null | grep -i swtpm || true)
printf '%s\n' "$plugins" | sed 's/^/    /'
printf '%s\n' "$plugins" | grep -q 'swtpm.lua.*lua script' || die "the Lua plugin is not loaded"

VENV_PY=/opt/swtpm-extcap/venv/bin/python
for log in proxmox-103-swtpm.log tpm12-swtpm.log; do
    in_root "$VENV_PY" -m swtpm_extcap convert "/root/swtpm-extcap/tests/data/corpus/$log" -o "/root/$log.pcapng" 2>&1 |
        sed 's/^/    /'
done

say "control frames (tshark -r proxmox-103 -Y swtpm.ctrl, first 6)"
ctrl=$(in_root tshark -r /root/proxmox-103-swtpm.log.pcapng -Y swtpm.ctrl 2>/dev/null | head -n 6 || true)
printf '%s\n' "$ctrl" | sed 's/^/    /'
printf '%s\n' "$ctrl" | grep -q 'CMD_GET_CAPABILITY' || die "control frames not decoded"

say "failed Unseals and friends (tshark -2 -r proxmox-103 -Y 'swtpm.cc == 0x15e')"
unseal=$(in_root tshark -2 -r /root/proxmox-103-swtpm.log.pcapng -Y 'swtpm.cc == 0x15e' \
    -T fields -e frame.number -e swtpm.request_in -e swtpm.response_in -e swtpm.cc -e tpm.resp.rc 2>/dev/null)
printf '%s\n' "$unseal" | sed 's/^/    /'
[ "$(printf '%s\n' "$unseal" | grep -c .)" -ge 4 ] || die "no Unseal request/response pairs"

say "responses carrying their command (first 4)"
in_root tshark -2 -r /root/proxmox-103-swtpm.log.pcapng -Y 'swtpm.request_in' 2>/dev/null | head -n 4 | sed 's/^/    /' || true

say "TPM 1.2 (tshark -r tpm12 -Y tpm12, first 4)"
t12=$(in_root tshark -r /root/tpm12-swtpm.log.pcapng -Y tpm12 2>/dev/null | head -n 4 || true)
printf '%s\n' "$t12" | sed 's/^/    /'
printf '%s\n' "$t12" | grep -q 'TPM_ORD_Startup' || die "TPM 1.2 ordinals not named"

say "profile (tshark -C SWTPM)"
in_root tshark -C SWTPM -r /root/proxmox-103-swtpm.log.pcapng -c 24 2>&1 | sed -n '1,4p;20,24p' | sed 's/^/    /'
in_root tshark -C SWTPM -r /root/proxmox-103-swtpm.log.pcapng -c 1 >/dev/null 2>&1 ||
    die "tshark -C SWTPM failed"

say "an ordinary user's personal install beside the system-wide one (uid 65534, HOME=/tmp/user)"
rm -rf "$ROOT/tmp/user"
mkdir -p "$ROOT/tmp/user"
chown 65534:65534 "$ROOT/tmp/user"
as_user() { chroot --userspec=65534:65534 "$ROOT" env -i HOME=/tmp/user PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"; }
as_user "$VENV_PY" -m swtpm_extcap install | sed 's/^/    /'
both=$(as_user tshark -G plugins 2>&1 | grep -i 'swtpm.lua\|Lua' || true)
printf '%s\n' "$both" | sed 's/^/    /'
[ "$(printf '%s\n' "$both" | grep -c 'swtpm.lua.*lua script')" = 2 ] || die "not both copies on disk and loaded"
! printf '%s\n' "$both" | grep -q 'Error' || die "two copies: a Lua error (the plugin registered twice)"
cp "$ROOT/root/tpm12-swtpm.log.pcapng" "$ROOT/tmp/user/t.pcapng"
chmod 644 "$ROOT/tmp/user/t.pcapng"
decoded=$(as_user tshark -r /tmp/user/t.pcapng -Y tpm12 2>/dev/null || true)
printf '%s\n' "$decoded" | grep -q TPM_ORD_Startup || die "two copies: the plugin does not decode"

say "uninstall of the global files (root; the venv stays for the next step)"
in_root "$VENV_PY" -m swtpm_extcap install --system --uninstall | sed 's/^/    /'
[ -z "$(in_root tshark -G plugins 2>/dev/null | grep -i swtpm || true)" ] || die "plugin left after uninstall"

say "the ordinary user's personal install alone"
as_user tshark -D 2>/dev/null | grep swtpm | sed 's/^/    /'
user_plugins=$(as_user tshark -G plugins 2>/dev/null | grep -i 'swtpm.lua' || true)
printf '%s\n' "$user_plugins" | sed 's/^/    /'
decoded=$(as_user tshark -r /tmp/user/t.pcapng -Y tpm12 2>/dev/null | head -n 2 || true)
printf '%s\n' "$decoded" | sed 's/^/    /'
printf '%s\n' "$decoded" | grep -q TPM_ORD_Startup || die "the personal Lua plugin does not decode for an ordinary user"
as_user "$VENV_PY" -m swtpm_extcap install --uninstall | sed 's/^/    /'

say "the same decode on Wireshark 4.0 (this machine) and $(in_root tshark --version | head -n 1 | sed 's/^TShark (Wireshark) //')"
CMP=$ROOT/tmp/decode-compare
rm -rf "$CMP" && mkdir -p "$CMP/plugin"
cp -r "$SRC/swtpm_extcap/wireshark/swtpm.lua" "$SRC/swtpm_extcap/wireshark/swtpm" "$CMP/plugin/"
failed=0
for log in "$SRC"/tests/data/corpus/*.log "$SRC"/tests/data/recordings/*.log; do
    name=$(basename "$log" .log)
    PYTHONPATH=$SRC python3 -m swtpm_extcap convert "$log" -o "$CMP/$name.pcapng" >/dev/null 2>&1 ||
        die "convert $log failed"
done
cp "$SRC"/tests/data/recordings/*.pcapng "$CMP/"
chmod -R a+rX "$CMP"
for pcap in "$CMP"/*.pcapng; do
    name=$(basename "$pcap" .pcapng)
    HOME=$CMP/home40 tshark -n -X "lua_script:$CMP/plugin/swtpm.lua" -r "$pcap" -2 -T pdml >"$CMP/$name.40.pdml" 2>/dev/null
    chroot --userspec=65534:65534 "$ROOT" env -i HOME=/tmp/cmphome PATH=/usr/bin:/bin tshark -n \
        -X "lua_script:/tmp/decode-compare/plugin/swtpm.lua" -r "/tmp/decode-compare/$name.pcapng" -2 -T pdml \
        >"$CMP/$name.44.pdml" 2>/dev/null
    if result=$(python3 "$SRC/bench/compare_pdml.py" "$CMP/$name.40.pdml" "$CMP/$name.44.pdml"); then
        say "  $name: $result"
    else
        say "  $name: DIFFERENT: $result"
        failed=1
    fi
done
[ "$failed" = 0 ] || die "the plugin decodes differently on Wireshark 4.0 and 4.4"
rm -rf "$CMP"

say "install.sh --uninstall (as root: the system-wide venv)"
in_root bash /root/swtpm-extcap/install.sh --uninstall | sed 's/^/    /'

say "all checks passed on $(in_root tshark --version | head -n 1 || true)"
