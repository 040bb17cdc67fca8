#!/usr/bin/env bash
# The real Wireshark GUI, as a new user sees it after ./install.sh: screenshots for docs/.
#
#   bench/gui_screenshots.sh [OUTDIR]        (default: docs/ of this checkout)
#   SWTPM_GUI_STEPS=e bench/gui_screenshots.sh   (only the steps named: a (with b), c, d, e)
#
# Needs Debian's wireshark-qt, xvfb, xdotool and imagemagick:
#   echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
#   apt-get install -y wireshark-qt xvfb xdotool imagemagick
# Everything happens under a temporary $HOME: ./install.sh puts the venv, the launcher, the
# Lua plugin and the SWTPM profile there; a settings file lists one "VM" (a copy of a corpus
# log) through a glob. Wireshark runs on a private Xvfb display (1400x900, no window
# manager) and is driven with xdotool; `import` takes the screenshots:
#   gui-interfaces.png   (a) the welcome page's interface list: swtpm-demo and swtpm-web1
#   gui-options.png      (b) the options dialog of swtpm-demo (the gear next to it), the
#                            pointer on "Runs" so that its (wrapped) tooltip shows
#   gui-options-replay.png (b) its second tab: follow or replay, and the delay
#   gui-live.png         (c) a live capture of swtpm-demo in the SWTPM profile (replay)
#   gui-details.png      (c) the same capture at its end: an Unseal response, its swtpm tree
#   gui-broken-config.png (d) the interface list with a broken settings file
#   gui-broken-config-capture.png (d) starting that entry: Wireshark's error dialog
#   gui-tpm2-createprimary.png (e) the TPM 2.0 decoder: a CreatePrimary request of the
#                            recorded tpm2-tools session (tests/data/recordings), its public
#                            template opened (handle, session and attribute bits folded)
#   gui-tpm2-policypcr.png   (e) a PolicyPCR request: its PCR selection
#   gui-tpm2-unseal-failed.png (e) a failed Unseal response: its Expert Info and the
#                            response code taken apart
#   gui-tpm2-statistics.png  (e) Statistics > TPM commands (swtpm-extcap) over the session's
#                            client-side pcap (tpm2-tss's pcap TCTI: real response times)
#   gui-tpm2-reload.png      (e) after Analyze > Reload Lua Plugins: TPM 2.0 still decoded
#                            (the failed responses, by a filter on the plugin's field; their
#                            color, the profile's "Failed response" rule, is checked)
# Click positions are measured for Debian 12's Wireshark 4.0 at 1400x900; the interface rows
# follow `tshark -D`'s order (same list). Each step checks a window title it expects, so a
# click that missed fails the script instead of producing a wrong picture.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$SRC/docs}
DISPLAY_NUM=${SWTPM_GUI_DISPLAY:-:77}
STEPS=${SWTPM_GUI_STEPS:-abcde}   # e.g. SWTPM_GUI_STEPS=e: the plugin's screenshots only
WORK=$(mktemp -d /tmp/swtpm-gui.XXXXXX)
XVFB_PID=""
WS_PID=""

want() { case "$STEPS" in *"$1"*) return 0 ;; esac; return 1; }
say() { printf '[gui] %s\n' "$*"; }
die() { printf '[gui] FAILED: %s\n' "$*" >&2; exit 1; }
cleanup() {
    [ -z "$WS_PID" ] || kill "$WS_PID" 2>/dev/null || true
    [ -z "$XVFB_PID" ] || kill "$XVFB_PID" 2>/dev/null || true
    rm -rf -- "$WORK"
}
trap cleanup EXIT

for tool in wireshark tshark Xvfb xdotool import; do
    command -v "$tool" >/dev/null 2>&1 || die "no $tool: apt-get install -y wireshark-qt xvfb xdotool imagemagick"
done
mkdir -p "$OUT"

export HOME=$WORK/home XDG_RUNTIME_DIR=$WORK/run
mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
unset XDG_CONFIG_HOME XDG_DATA_HOME SWTPM_EXTCAP_CONFIG

say "install.sh into $HOME"
PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
bash "$SRC/install.sh" --personal --python "$PYTHON" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; die "install.sh failed"; }

# one configured "VM": a real log found by a glob of the settings file
mkdir -p "$HOME/vms/web1" "$HOME/.config/swtpm-extcap"
cp "$SRC/tests/data/corpus/proxmox-103-swtpm.log" "$HOME/vms/web1/swtpm.log"
CONFIG=$HOME/.config/swtpm-extcap/config.toml
printf '[local]\nglobs = ["%s/vms/*/swtpm.log"]\n' "$HOME" >"$CONFIG"

row_of() {  # the 1-based row of an interface in tshark -D (= the welcome page's list)
    tshark -D 2>/dev/null | awk -v name="$1" '$2 == name { sub(/\./, "", $1); print $1; exit }'
}
DEMO_ROW=$(row_of swtpm-demo)
[ -n "$DEMO_ROW" ] || die "tshark -D does not list swtpm-demo"
[ -n "$(row_of swtpm-web1)" ] || die "tshark -D does not list swtpm-web1"
# welcome page at 1400x900: row 1 at y=237, 17.42 px per row; the gear at x=180
DEMO_Y=$(awk -v n="$DEMO_ROW" 'BEGIN { printf "%d", 237 + (n - 1) * 17.42 }')

export DISPLAY=$DISPLAY_NUM
Xvfb "$DISPLAY" -screen 0 1400x900x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
sleep 2

main_window() {  # the Wireshark main window (no window manager: find it by its size)
    local w g
    for _ in $(seq 1 60); do
        for w in $(xdotool search --onlyvisible --name "." 2>/dev/null); do
            g=$(xdotool getwindowgeometry "$w" | awk '/Geometry/ { print $2 }')
            case "$g" in 750x550|1400x900) echo "$w"; return 0 ;; esac
        done
        sleep 0.5
    done
    return 1
}
start_wireshark() {
    wireshark "$@" >>"$WORK/wireshark.log" 2>&1 &
    WS_PID=$!
    WIN=$(main_window) || die "no Wireshark window"
    xdotool windowmove "$WIN" 0 0
    xdotool windowsize "$WIN" 1400 900
    sleep 3
}
stop_wireshark() {
    kill "$WS_PID" 2>/dev/null || true
    wait "$WS_PID" 2>/dev/null || true
    WS_PID=""
}
shot() { import -window root "$OUT/$1"; say "wrote $OUT/$1"; }
expect_window() {
    xdotool search --onlyvisible --name "$1" >/dev/null 2>&1 || die "no window named like '$1'"
}

if want a; then  # (a) and (b): one Wireshark
say "(a) interface list"
start_wireshark
sleep 3
xdotool mousemove 500 "$DEMO_Y" click 1
sleep 1
shot gui-interfaces.png

say "(b) options dialog"
xdotool mousemove 180 "$DEMO_Y" click 1
sleep 3
expect_window "Interface Options: .*swtpm-demo"
OPT=$(xdotool search --onlyvisible --name "Interface Options: .*swtpm-demo" | head -n 1)
eval "$(xdotool getwindowgeometry --shell "$OPT")"   # X, Y of the dialog
# the "Runs" label: second row of the Capture tab; hover until Qt shows the tooltip
xdotool mousemove $((X + 45)) $((Y + 130))
sleep 1
xdotool mousemove $((X + 47)) $((Y + 131))
sleep 3
shot gui-options.png
xdotool mousemove $((X + 150)) $((Y + 25)) click 1   # the second tab
sleep 1
xdotool mousemove $((X + 560)) $((Y + 330))          # away from any tooltip
sleep 1
shot gui-options-replay.png
xdotool key Escape
stop_wireshark
fi

if want c; then
say "(c) live capture in the SWTPM profile"
start_wireshark -C SWTPM -k -i swtpm-demo
sleep 4
expect_window "Capturing from"
xdotool mousemove 600 205 click 1   # a row of the list in the details pane, not frame 1 (a SYN)
sleep 1
shot gui-live.png
# the replay (474 frames, 50 ms apart) ends by itself; then an Unseal response in detail
sleep 25
xdotool windowfocus "$WIN" 2>/dev/null || true
xdotool key --window "$WIN" ctrl+g
sleep 1
xdotool type --window "$WIN" --delay 50 "210"
xdotool key --window "$WIN" Return
sleep 2
xdotool mousemove 120 580 click 1     # the SWTPM line of the details pane (no comment above it)
sleep 1
xdotool key --window "$WIN" shift+Right
sleep 1
shot gui-details.png
stop_wireshark
fi

if want d; then
say "(d) a broken settings file"
printf '[local]\nglobs = ["%s/vms/*/swtpm.log"\n' "$HOME" >"$CONFIG"   # no closing bracket
ERROR_ROW=$(row_of swtpm-config-error)
[ -n "$ERROR_ROW" ] || die "tshark -D does not list swtpm-config-error"
ERROR_Y=$(awk -v n="$ERROR_ROW" 'BEGIN { printf "%d", 237 + (n - 1) * 17.42 }')
start_wireshark
xdotool mousemove 500 "$ERROR_Y" click 1
xdotool mousemove 1300 850   # no row under the pointer
sleep 3
shot gui-broken-config.png
xdotool mousemove 500 "$ERROR_Y" click --repeat 2 1   # start it, as a user would
sleep 5
shot gui-broken-config-capture.png
stop_wireshark
printf '%s\n' "----- what tshark -D says with that file:"
tshark -D 2>&1 | grep -i -e swtpm -e config || true
fi

if want e; then
say "(e) the TPM 2.0 decoder (the Lua plugin)"
VENV_PY=$HOME/.local/share/swtpm-extcap/venv/bin/python
SESSION=$WORK/session.pcapng
CLIENT=$SRC/tests/data/recordings/tpm2-tools-session-client.pcapng
"$VENV_PY" -m swtpm_extcap convert "$SRC/tests/data/recordings/tpm2-tools-session-swtpm.log" \
    -o "$SESSION" >"$WORK/convert.log" 2>&1 || { cat "$WORK/convert.log"; die "convert failed"; }
first_frame() {  # the first frame of the session matching a display filter
    tshark -r "$SESSION" -Y "$1" -T fields -e frame.number 2>/dev/null | head -n 1
}
CREATE=$(first_frame 'tpm2.commandCode == 0x131 && tpm2.type == 0x0001')   # CreatePrimary, RSA
POLICY=$(first_frame 'tpm2.commandCode == 0x17f')                          # PolicyPCR
UNSEAL=$(first_frame 'swtpm.cc == 0x15e && tpm.resp.rc != 0')              # a failed Unseal
[ -n "$CREATE" ] && [ -n "$POLICY" ] && [ -n "$UNSEAL" ] || die "frames not found ($CREATE/$POLICY/$UNSEAL)"
say "CreatePrimary $CREATE, PolicyPCR $POLICY, failed Unseal $UNSEAL"

# one packet's details: no bytes pane, the list dragged down to ~10 rows (its splitter at
# y=483 at 1400x900), the packet selected again, the details' TPM 2.0 line (the one before
# the last: SWTPM) opened with all its subtrees; then the keys given fold what is in the way
decoded() {  # decoded FRAME PNG [KEY...]
    local frame=$1 png=$2
    shift 2
    start_wireshark -C SWTPM -o gui.layout_content_3:NONE -r "$SESSION" -g "$frame"
    expect_window "session.pcapng"
    xdotool mousemove 700 483 sleep 0.3 mousedown 1 sleep 0.3 mousemove 700 450 sleep 0.3 \
        mousemove 700 300 sleep 0.3 mouseup 1
    sleep 1
    xdotool key --window "$WIN" ctrl+g
    sleep 0.5
    xdotool type --window "$WIN" --delay 50 "$frame"
    xdotool key --window "$WIN" Return
    sleep 1
    xdotool mousemove 300 312 click 1   # the details' first line
    sleep 0.5
    xdotool key --window "$WIN" End Up
    sleep 0.3
    xdotool key --window "$WIN" shift+Right
    sleep 1
    local k
    for k in "$@"; do xdotool key --window "$WIN" "$k"; sleep 0.2; done
    sleep 1
    shot "$png"
    stop_wireshark
}
# CreatePrimary: fold primaryHandle, commandSession, inSensitive, then inPublic's objectAttributes
decoded "$CREATE" gui-tpm2-createprimary.png Down Down Down Down Left Down Down Left Down Left \
    Down Down Down Down Down Left
decoded "$POLICY" gui-tpm2-policypcr.png
decoded "$UNSEAL" gui-tpm2-unseal-failed.png

# the statistics report: Statistics menu, the entry after the three built-in generic ones
start_wireshark -C SWTPM -r "$CLIENT"
xdotool mousemove 324 10 click 1
sleep 1
xdotool mousemove 400 311 click 1
sleep 3
expect_window "TPM commands .swtpm-extcap."
STATS=$(xdotool search --onlyvisible --name "TPM commands .swtpm-extcap." | head -n 1)
xdotool windowmove "$STATS" 60 110
xdotool windowsize "$STATS" 1280 740
sleep 1
shot gui-tpm2-statistics.png
stop_wireshark

# Analyze > Reload Lua Plugins (the plugin of swtpm-extcap 0.x lost the TPM decoding here)
start_wireshark -C SWTPM -r "$SESSION" -g "$UNSEAL"
xdotool mousemove 255 10 click 1       # Analyze
sleep 1
xdotool mousemove 315 263 click 1      # Reload Lua Plugins
sleep 8
xdotool mousemove 300 75 click 1       # the display filter bar: a field of the plugin only
xdotool type --delay 20 "tpm2.responseCode != 0"
xdotool key Return
sleep 3
shot gui-tpm2-reload.png
# the first row, a failed response, has the profile's "Failed response" color (#ffb2b2)
COLOR=$(import -window root -crop 1x1+700+120 txt:- | tail -n 1)
stop_wireshark
case "$COLOR" in *"(255,178,178)"*) say "after the reload: failed responses decoded and colored" ;;
    *) die "after Reload Lua Plugins the first failed response is not decoded ($COLOR)" ;; esac
fi
say "done"
