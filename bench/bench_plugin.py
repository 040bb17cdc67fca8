#!/usr/bin/env python3
"""What the Lua plugin costs: tshark -r with and without it on a big converted capture, and the GUI.

    bench/bench_plugin.py [--mb 50] [--rounds 5] [--gui] [--work DIR]

A real swtpm log of MB MiB (bench/gen_big_log.py, seed 1, Proxmox prefix) is
converted by the package (the same pcapng a capture gives), then, round after
round, interleaved on the same capture:

  stock        tshark -r CAP -Y tpm.req.cc      (no plugin; Wireshark's TPM dissector)
  plugin       tshark -r CAP -Y swtpm.cc        (the plugin, filtering on its own field)
  plugin-tpm   tshark -r CAP -Y tpm.req.cc      (the plugin; Wireshark's field name)
  plugin-deep  tshark -r CAP -Y tpm2.nvIndex    (the plugin decoding every message fully)
  plugin-bare  tshark -r CAP                    (the plugin, no filter: columns only)

Each run's wall time, CPU time (user + sys) and peak RSS come from wait4(2); a
round's ratio is plugin / stock of the same round; the medians are printed,
and the per-frame CPU cost over stock. Memory: the same at half the size,
to show the plugin's RSS over stock per frame (flat = a few bytes a frame).
--gui: Wireshark (Qt) under Xvfb opens the capture with and without the
plugin; a tap's final draw (all frames counted) marks the end of the load.
The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import big_log  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "swtpm_extcap" / "wireshark" / "swtpm.lua"
LUA = ["-X", f"lua_script:{PLUGIN}"]
MODES = {
    "stock": ([], ["-Y", "tpm.req.cc"]),
    "plugin": (LUA, ["-Y", "swtpm.cc"]),
    "plugin-tpm": (LUA, ["-Y", "tpm.req.cc"]),
    "plugin-deep": (LUA, ["-Y", "tpm2.nvIndex"]),
    "plugin-bare": (LUA, []),
}
#: a tap that writes "<frames seen>" at each draw (the GUI draws taps while loading and at the end)
GUI_TAP = """
local out = os.getenv("SWTPM_BENCH_DONE")
local listener = Listener.new("frame", nil)
local n = 0
function listener.packet() n = n + 1 end
function listener.draw()
    local f = io.open(out, "a"); f:write(n .. "\\n"); f:close()
end
"""


def env_for(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "WIRESHARK"))}
    env["HOME"] = str(home)
    return env


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS KiB) of one run; its output is thrown away."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0 or "Lua" in err:
        raise SystemExit(f"{' '.join(argv)} failed: {err[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def frames(cap: Path, env: dict[str, str]) -> int:
    out = subprocess.run(["capinfos", "-c", "-M", str(cap)], env=env, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def convert(log: Path, cap: Path) -> Path:
    if not cap.exists():
        subprocess.run([sys.executable, "-m", "swtpm_extcap", "convert", str(log), "-o", str(cap)],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return cap


def tshark_rounds(cap: Path, rounds: int, env: dict[str, str]) -> dict[str, dict[str, float]]:
    results: dict[str, list[tuple[float, float, int]]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode, (lua, flt) in MODES.items():
            results[mode].append(run(["tshark", "-n", *lua, "-r", str(cap), *flt], env))
    out = {}
    for mode, runs in results.items():
        out[mode] = {"wall": statistics.median(r[0] for r in runs), "cpu": statistics.median(r[1] for r in runs),
                     "rss_mib": statistics.median(r[2] for r in runs) / 1024}
        out[mode]["ratio_cpu"] = statistics.median(r[1] / s[1] for r, s in zip(runs, results["stock"]))
        out[mode]["ratio_wall"] = statistics.median(r[0] / s[0] for r, s in zip(runs, results["stock"]))
    return out


def gui_open(cap: Path, plugin: bool, total: int, work: Path) -> float:
    """Seconds from starting wireshark -r CAP to the tap's draw with every frame counted."""
    display = ":93"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    done = work / "done.txt"
    done.unlink(missing_ok=True)
    tap = work / "gui_tap.lua"
    tap.write_text(GUI_TAP)
    env = env_for(work / ("gui-plugin" if plugin else "gui-stock"))
    env.update(DISPLAY=display, SWTPM_BENCH_DONE=str(done))
    argv = ["wireshark", "-r", str(cap), "-X", f"lua_script:{tap}", *(LUA if plugin else [])]
    start = time.perf_counter()
    ws = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 600:
            if done.exists() and str(total) in done.read_text().split():
                return time.perf_counter() - start
            time.sleep(0.05)
        raise SystemExit("the GUI did not finish loading in 10 minutes")
    finally:
        ws.send_signal(signal.SIGTERM)
        ws.wait(timeout=30)
        xvfb.terminate()
        xvfb.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=50, help="size of the big log (MiB)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gui", action="store_true", help="also time the GUI's opening (needs wireshark-qt, Xvfb)")
    parser.add_argument("--work", type=Path, help="keep logs and captures here (reused)")
    ns = parser.parse_args(argv)
    if shutil.which("tshark") is None:
        raise SystemExit("no tshark")
    work = ns.work or Path(tempfile.mkdtemp(prefix="bench-plugin."))
    work.mkdir(parents=True, exist_ok=True)
    env = env_for(work / "home")
    summary: dict[str, object] = {"mb": ns.mb, "rounds": ns.rounds,
                                  "tshark": subprocess.run(["tshark", "--version"], capture_output=True,
                                                           text=True).stdout.splitlines()[0]}
    sizes = {}
    for mb in (ns.mb // 2, ns.mb):
        cap = convert(big_log(work / f"big{mb}.log", mb), work / f"big{mb}.pcapng")
        n = frames(cap, env)
        res = tshark_rounds(cap, ns.rounds, env)
        sizes[mb] = (n, res)
        print(f"\n{mb} MiB log: {n} frames, medians of {ns.rounds} interleaved rounds")
        print(f"{'mode':<12} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} {'cpu/stock':>10} {'us/frame over stock':>20}")
        for mode, r in res.items():
            extra = (r["cpu"] - res["stock"]["cpu"]) / n * 1e6
            print(f"{mode:<12} {r['wall']:8.2f} {r['cpu']:8.2f} {r['rss_mib']:9.1f} {r['ratio_cpu']:10.2f} {extra:20.1f}")
        summary[f"{mb}mb"] = {"frames": n, **{m: {k: round(v, 3) for k, v in r.items()} for m, r in res.items()}}
    (n1, r1), (n2, r2) = sizes[ns.mb // 2], sizes[ns.mb]
    per_frame = {m: (r2[m]["rss_mib"] - r1[m]["rss_mib"]) * 1024 * 1024 / (n2 - n1) for m in ("stock", "plugin")}
    print(f"\nRSS growth per frame from {n1} to {n2} frames: stock {per_frame['stock']:.0f} B,"
          f" plugin {per_frame['plugin']:.0f} B (the plugin's own: {per_frame['plugin'] - per_frame['stock']:.0f} B)")
    summary["rss_bytes_per_frame"] = {k: round(v) for k, v in per_frame.items()}
    if ns.gui:
        cap = work / f"big{ns.mb}.pcapng"
        gui = {"stock": gui_open(cap, False, n2, work), "plugin": gui_open(cap, True, n2, work)}
        print(f"\nGUI open ({n2} frames): stock {gui['stock']:.1f} s, plugin {gui['plugin']:.1f} s")
        summary["gui_open_s"] = {k: round(v, 2) for k, v in gui.items()}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
