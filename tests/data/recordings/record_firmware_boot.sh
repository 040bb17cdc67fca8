#!/usr/bin/env bash
# Record the swtpm debug log of a UEFI firmware boot, as a Proxmox VE VM with a vTPM boots.
#
#   tests/data/recordings/record_firmware_boot.sh [OUT]   (default OUT: next to this script,
#                                                          ovmf-secboot-proxmox-swtpm.log)
#
# Needs Debian's qemu-system-x86, ovmf, swtpm and swtpm-tools (KVM when /dev/kvm is usable,
# else TCG, slower). No disk: OVMF's secure-boot build measures itself, reads PCRs, finds no
# boot device and stays in its boot manager; the recording stops when the log has been quiet
# for QUIET seconds (default 15) after the firmware's TPM traffic, or after LIMIT (120) s.
#
# swtpm runs as Proxmox starts it (/usr/share/perl5/PVE/QemuServer.pm): swtpm_setup first
# (EK and platform certificates, NVRAM locked), then `swtpm socket --tpmstate
# backend-uri=file://... --ctrl type=unixio,... --pid ... --terminate --daemon --log
# file=...,level=20,prefix=[id=<time>] --tpm2` (level 20 instead of Proxmox's 1: records need
# 2 or more). QEMU gets the control socket as Proxmox passes it: -chardev socket -tpmdev
# emulator -device tpm-tis. The log is the fixture; this script is its provenance.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/ovmf-secboot-proxmox-swtpm.log}
QUIET=${QUIET:-15}
LIMIT=${LIMIT:-120}
OVMF_CODE=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.secboot.fd}
OVMF_VARS=${OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.ms.fd}

for tool in qemu-system-x86_64 swtpm swtpm_setup; do
    command -v "$tool" >/dev/null || { echo "no $tool: apt-get install qemu-system-x86 ovmf swtpm swtpm-tools" >&2; exit 1; }
done
[ -r "$OVMF_CODE" ] && [ -r "$OVMF_VARS" ] || { echo "no OVMF images: apt-get install ovmf" >&2; exit 1; }

WORK=$(mktemp -d /tmp/swtpm-firmware.XXXXXX)
QEMU_PID=""
cleanup() {
    [ -z "$QEMU_PID" ] || kill "$QEMU_PID" 2>/dev/null || true
    [ ! -s "$WORK/swtpm.pid" ] || kill "$(cat "$WORK/swtpm.pid")" 2>/dev/null || true
    rm -rf -- "$WORK"
}
trap cleanup EXIT

# swtpm_setup as Proxmox runs it (its own config; certificates made by swtpm_localca)
mkdir -p "$WORK/state" "$WORK/localca"
cat >"$WORK/swtpm_setup.conf" <<EOF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $WORK/swtpm-localca.conf
create_certs_tool_options = /etc/swtpm-localca.options
EOF
cat >"$WORK/swtpm-localca.conf" <<EOF
statedir = $WORK/localca
signingkey = $WORK/localca/signkey.pem
issuercert = $WORK/localca/issuercert.pem
certserial = $WORK/localca/certserial
EOF
swtpm_setup --tpmstate "file://$WORK/state/tpm2-00.permall" --createek --create-ek-cert \
    --create-platform-cert --lock-nvram --config "$WORK/swtpm_setup.conf" --not-overwrite --tpm2 \
    --ecc >"$WORK/setup.log" 2>&1 || { cat "$WORK/setup.log" >&2; exit 1; }

LOG=$WORK/swtpm.log
swtpm socket --tpmstate "backend-uri=file://$WORK/state/tpm2-00.permall,mode=0600" \
    --ctrl "type=unixio,path=$WORK/swtpm-sock,mode=0600" --pid "file=$WORK/swtpm.pid" \
    --terminate --daemon --log "file=$LOG,level=20,prefix=[id=$(date +%s)] " --tpm2

# KVM when it offers System Management Mode (the secure-boot build needs it), else TCG
ACCEL=${ACCEL:-}
if [ -z "$ACCEL" ]; then
    ACCEL=tcg
    if [ -w /dev/kvm ] && qemu-system-x86_64 -machine q35,accel=kvm,smm=on -display none -S \
            -monitor none -nodefaults -no-user-config -daemonize -pidfile "$WORK/probe.pid" 2>/dev/null; then
        kill "$(cat "$WORK/probe.pid")" 2>/dev/null || true
        ACCEL=kvm
    fi
fi
cp "$OVMF_VARS" "$WORK/vars.fd"
qemu-system-x86_64 -machine "q35,accel=$ACCEL,smm=on" -global driver=cfi.pflash01,property=secure,value=on \
    -m 512 -display none -serial "file:$WORK/serial.log" -monitor none -net none \
    -drive "if=pflash,unit=0,format=raw,readonly=on,file=$OVMF_CODE" \
    -drive "if=pflash,unit=1,format=raw,file=$WORK/vars.fd" \
    -chardev "socket,id=tpmchar,path=$WORK/swtpm-sock" -tpmdev emulator,id=tpmdev,chardev=tpmchar \
    -device tpm-tis,tpmdev=tpmdev &
QEMU_PID=$!

start=$SECONDS
last_size=0
last_change=$SECONDS
while kill -0 "$QEMU_PID" 2>/dev/null; do
    sleep 1
    size=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
    if [ "$size" != "$last_size" ]; then last_size=$size; last_change=$SECONDS; fi
    if [ "$size" -gt 0 ] && [ $((SECONDS - last_change)) -ge "$QUIET" ]; then break; fi
    if [ $((SECONDS - start)) -ge "$LIMIT" ]; then break; fi
done
kill "$QEMU_PID" 2>/dev/null || true
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=""
sleep 1   # swtpm --terminate exits when QEMU closes the connection
cp "$LOG" "$OUT"
echo "recorded $(wc -l <"$OUT") lines, $(grep -c 'SWTPM_IO_Read' "$OUT") TPM commands ($ACCEL, $((SECONDS - start)) s) -> $OUT"
