#!/usr/bin/env python3
"""Record the policy sessions of ``tests/data/policy`` against a real swtpm (level 20).

Each scenario starts its own ``swtpm socket`` (``tests/realtpm.py``) with a
Proxmox-like ``[id=<epoch>] `` log prefix and no ``startup-clear`` (the
"firmware" sends TPM2_Startup, so the PCR replay knows every value), drives it
with tpm2-tools 5.4 (and systemd 252's ``systemd-creds``), and writes:

* ``<scenario>.log``: swtpm's log, as swtpm wrote it;
* ``<scenario>.truth.json``: what the *client* saw, never read from the log:
  per step its command line, exit status, stdout and the tail of stderr, and
  the files the tools wrote (policy digests, PCR values) in hex.

Usage: ``record.py OUTDIR [SCENARIO ...]`` (default: all of :data:`SCENARIOS`).
The committed files were made with ``record.py tests/data/policy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/: realtpm
import realtpm  # noqa: E402

#: what "firmware" measures before the OS starts (sha256 digests of made-up events)
FIRMWARE = [("0", "a0"), ("7", "b7"), ("4", "c4"), ("7", "d7")]
SEALED = b"the disk key\n"


class Client:
    """Runs the steps of one scenario against one swtpm and keeps the client's view."""

    def __init__(self, sw: realtpm.Swtpm, work: Path) -> None:
        self.sw = sw
        self.work = work
        self.steps: list[dict[str, object]] = []

    def run(self, *args: str, ok: bool = True, flush: bool = False) -> subprocess.CompletedProcess[str]:
        """One tool run; ``flush``: then flush the transient objects it left loaded
        (there is no resource manager: tpm2-tools leave what they load in the TPM)."""
        proc = self._run(args, ok)
        if flush:
            self._run(("tpm2_flushcontext", "-t"), True)
        return proc

    def _run(self, args: tuple[str, ...], ok: bool) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        for k in ("TPM2TOOLS_TCTI", "TCTI_PCAP_FILE", "TPM2TOOLS_ENABLE_ERRATA"):
            env.pop(k, None)
        env["TPM2TOOLS_TCTI"] = self.sw.tcti()
        proc = subprocess.run(list(args), cwd=self.work, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120)
        self.steps.append({"args": list(args), "rc": proc.returncode,
                           "stdout": proc.stdout, "stderr": proc.stderr[-600:]})
        if (proc.returncode == 0) != ok:
            raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode} (expected"
                               f" {'success' if ok else 'failure'})\n{proc.stdout}\n{proc.stderr}")
        return proc

    def firmware(self) -> None:
        self.run("tpm2_startup", "-c")
        for pcr, byte in FIRMWARE:
            self.run("tpm2_pcrextend", f"{pcr}:sha256={byte * 32}")

    def primary(self) -> None:
        self.run("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb",
                 "-c", "prim.ctx", "-a",
                 "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt", flush=True)

    def seal(self, policy: str, attrs: str = "fixedtpm|fixedparent|noda", auth: str = "") -> None:
        (self.work / "secret.bin").write_bytes(SEALED)
        self.run("tpm2_create", "-C", "prim.ctx", "-L", policy, "-i", "secret.bin", "-u", "seal.pub",
                 "-r", "seal.priv", "-a", attrs, *(["-p", auth] if auth else []), flush=True)
        self.run("tpm2_load", "-C", "prim.ctx", "-u", "seal.pub", "-r", "seal.priv", "-c", "seal.ctx",
                 flush=True)

    def files(self) -> dict[str, str]:
        return {p.name: p.read_bytes().hex() for p in sorted(self.work.iterdir())
                if p.suffix in (".policy", ".bin", ".digest") and p.is_file()}


def pcr_seal(c: Client) -> None:
    """A secret sealed to PCR 7 unseals; after one more extend of PCR 7 the unseal fails."""
    c.firmware()
    c.primary()
    c.run("tpm2_pcrread", "sha256:7", "-o", "pcr7.bin")
    c.run("tpm2_startauthsession", "-S", "trial.ctx")
    c.run("tpm2_policypcr", "-S", "trial.ctx", "-l", "sha256:7", "-f", "pcr7.bin", "-L", "pcr7.policy")
    c.run("tpm2_flushcontext", "trial.ctx")
    c.seal("pcr7.policy")
    for attempt, ok in (("first", True), ("second", False)):
        if attempt == "second":
            c.run("tpm2_pcrextend", "7:sha256=" + "e7" * 32)  # a new boot loader is measured
        c.run("tpm2_startauthsession", "--policy-session", "-S", "pol.ctx")
        c.run("tpm2_policypcr", "-S", "pol.ctx", "-l", "sha256:7", "-L", f"{attempt}.policy")
        c.run("tpm2_unseal", "-c", "seal.ctx", "-p", "session:pol.ctx", "-o", f"{attempt}.out", ok=ok,
              flush=True)
        c.run("tpm2_flushcontext", "pol.ctx")


def _trial(c: Client, out: str, *steps: tuple[str, ...]) -> None:
    """A trial session through ``steps`` (tpm2_policy* argument lists, without -S/-L)
    whose digest ends in ``out``."""
    c.run("tpm2_startauthsession", "-S", "trial.ctx")
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        c.run(step[0], "-S", "trial.ctx", *step[1:], *(["-L", out] if last else []))
    c.run("tpm2_flushcontext", "trial.ctx")


def _policy(c: Client, *steps: tuple[str, ...], ok: bool = True) -> None:
    """A policy session pol.ctx through ``steps``; the last may fail (``ok``)."""
    c.run("tpm2_startauthsession", "--policy-session", "-S", "pol.ctx")
    for i, step in enumerate(steps):
        c.run(step[0], "-S", "pol.ctx", *step[1:], ok=ok or i < len(steps) - 1)


def pcr_or(c: Client) -> None:
    """PolicyOR of two PCR 7 states: unseals in either, fails in a third."""
    import hashlib

    c.firmware()
    c.primary()
    c.run("tpm2_pcrread", "sha256:7", "-o", "state-a.bin")
    next_value = hashlib.sha256((c.work / "state-a.bin").read_bytes() + bytes([0xF1]) * 32).digest()
    (c.work / "state-b.bin").write_bytes(next_value)  # PCR 7 after the next update's extend
    _trial(c, "a.policy", ("tpm2_policypcr", "-l", "sha256:7", "-f", "state-a.bin"))
    _trial(c, "b.policy", ("tpm2_policypcr", "-l", "sha256:7", "-f", "state-b.bin"))
    _trial(c, "or.policy", ("tpm2_policypcr", "-l", "sha256:7", "-f", "state-a.bin"),
           ("tpm2_policyor", "-l", "sha256:a.policy,b.policy"))
    c.seal("or.policy")
    for extend, ok in ((None, True), ("f1", True), ("f2", False)):
        if extend:
            c.run("tpm2_pcrextend", f"7:sha256={extend * 32}")
        _policy(c, ("tpm2_policypcr", "-l", "sha256:7"),
                ("tpm2_policyor", "-l", "sha256:a.policy,b.policy"), ok=ok)
        if ok:
            c.run("tpm2_unseal", "-c", "seal.ctx", "-p", "session:pol.ctx", flush=True)
        c.run("tpm2_flushcontext", "pol.ctx")


def command_code(c: Client) -> None:
    """PolicyAuthValue + PolicyCommandCode(Unseal), used with the right command and password,
    then with the wrong password, then for another command (ObjectChangeAuth)."""
    c.firmware()
    c.primary()
    steps = (("tpm2_policyauthvalue",), ("tpm2_policycommandcode", "TPM2_CC_Unseal"))
    _trial(c, "cc.policy", *steps)
    c.seal("cc.policy", attrs="fixedtpm|fixedparent|adminwithpolicy", auth="s3cret")
    for password, ok in (("s3cret", True), ("wrong", False)):
        _policy(c, *steps)
        c.run("tpm2_unseal", "-c", "seal.ctx", "-p", f"session:pol.ctx+{password}", ok=ok, flush=True)
        c.run("tpm2_flushcontext", "pol.ctx")
    _policy(c, *steps)
    c.run("tpm2_changeauth", "-c", "seal.ctx", "-C", "prim.ctx", "-p", "session:pol.ctx+s3cret",
          "-r", "new.priv", "n3w", ok=False, flush=True)
    c.run("tpm2_flushcontext", "pol.ctx")


def policy_secret(c: Client) -> None:
    """A secret sealed to PolicySecret(owner hierarchy): unseals with the owner password,
    PolicySecret fails with a wrong one."""
    c.firmware()
    c.run("tpm2_changeauth", "-c", "o", "ownerpass")
    c.run("tpm2_createprimary", "-C", "o", "-P", "ownerpass", "-g", "sha256", "-G", "ecc256:aes128cfb",
          "-c", "prim.ctx", flush=True)
    _trial(c, "secret.policy", ("tpm2_policysecret", "-c", "o", "ownerpass"))
    c.seal("secret.policy")
    _policy(c, ("tpm2_policysecret", "-c", "o", "ownerpass"))
    c.run("tpm2_unseal", "-c", "seal.ctx", "-p", "session:pol.ctx", flush=True)
    c.run("tpm2_flushcontext", "pol.ctx")
    _policy(c, ("tpm2_policysecret", "-c", "o", "guessed"), ok=False)
    c.run("tpm2_flushcontext", "pol.ctx")


def nv_policy(c: Client) -> None:
    """An NV index whose authPolicy is PolicyCommandCode(NV_Write) OR PolicyPCR(7) +
    PolicyCommandCode(NV_Read): written, read, then read again after PCR 7 moved."""
    c.firmware()
    c.run("tpm2_pcrread", "sha256:7", "-o", "pcr7.bin")
    write = ("tpm2_policycommandcode", "TPM2_CC_NV_Write")
    read = (("tpm2_policypcr", "-l", "sha256:7", "-f", "pcr7.bin"),
            ("tpm2_policycommandcode", "TPM2_CC_NV_Read"))
    _trial(c, "write.policy", write)
    _trial(c, "read.policy", *read)
    _trial(c, "nv.policy", write, ("tpm2_policyor", "-l", "sha256:write.policy,read.policy"))
    index = "0x1500020"
    c.run("tpm2_nvdefine", index, "-C", "o", "-s", "32", "-L", "nv.policy",
          "-a", "policywrite|policyread|ownerread")
    (c.work / "nvdata.bin").write_bytes(bytes(range(32)))
    _policy(c, write, ("tpm2_policyor", "-l", "sha256:write.policy,read.policy"))
    c.run("tpm2_nvwrite", index, "-C", index, "-P", "session:pol.ctx", "-i", "nvdata.bin")
    c.run("tpm2_flushcontext", "pol.ctx")
    for extend, ok in ((None, True), ("99", False)):
        if extend:
            c.run("tpm2_pcrextend", f"7:sha256={extend * 32}")
        _policy(c, ("tpm2_policypcr", "-l", "sha256:7"), read[1])
        c.run("tpm2_policyor", "-S", "pol.ctx", "-l", "sha256:write.policy,read.policy", ok=ok)
        if ok:
            c.run("tpm2_nvread", index, "-C", index, "-P", "session:pol.ctx", "-s", "32")
        c.run("tpm2_flushcontext", "pol.ctx")
    c.run("tpm2_nvundefine", index, "-C", "o")


def cryptenroll(c: Client) -> None:
    """A systemd-cryptenroll-like flow: PolicyPCR on 7 with the enrolled PCR values given
    as pcrDigest; after PCR 7 moved, PolicyPCR itself fails."""
    c.firmware()
    c.primary()
    c.run("tpm2_pcrread", "sha256:7", "-o", "enrolled.bin")
    _trial(c, "pcr7.policy", ("tpm2_policypcr", "-l", "sha256:7", "-f", "enrolled.bin"))
    c.seal("pcr7.policy")
    for extend, ok in ((None, True), ("5e", False)):
        if extend:
            c.run("tpm2_pcrextend", f"7:sha256={extend * 32}")
        _policy(c, ("tpm2_policypcr", "-l", "sha256:7", "-f", "enrolled.bin"), ok=ok)
        if ok:
            c.run("tpm2_unseal", "-c", "seal.ctx", "-p", "session:pol.ctx", flush=True)
        c.run("tpm2_flushcontext", "pol.ctx")


def systemd_creds(c: Client) -> None:
    """systemd-creds encrypt --with-key=tpm2 --tpm2-pcrs=7; decrypt; PCR 7 extended; the
    second decrypt abandons its policy session (systemd compares the digests itself) and
    exits without flushing it; a resource manager then flushes the session of the client
    that went away (``tpm2_flushcontext -l`` here, as the kernel's /dev/tpmrm0 does); a
    third decrypt leaves its session open at the end of the log."""
    c.firmware()
    device = f"--tpm2-device=swtpm:host={realtpm.HOST},port={c.sw.port}"
    (c.work / "plain.txt").write_text("a credential\n")
    c.run("systemd-creds", "encrypt", "--with-key=tpm2", device, "--tpm2-pcrs=7", "--name=disk",
          "plain.txt", "disk.cred")
    c.run("systemd-creds", "decrypt", device, "--name=disk", "disk.cred", "-")
    c.run("tpm2_pcrextend", "7:sha256=" + "ee" * 32)
    c.run("systemd-creds", "decrypt", device, "--name=disk", "disk.cred", "-", ok=False)
    c.run("tpm2_flushcontext", "-l")
    c.run("tpm2_flushcontext", "-t")
    c.run("systemd-creds", "decrypt", device, "--name=disk", "disk.cred", "-", ok=False)


def pcr_changed(c: Client) -> None:
    """PolicyPCR satisfied, then PCR 7 extended before the Unseal that uses the session:
    TPM_RC_PCR_CHANGED."""
    c.firmware()
    c.primary()
    c.run("tpm2_pcrread", "sha256:7", "-o", "pcr7.bin")
    _trial(c, "pcr7.policy", ("tpm2_policypcr", "-l", "sha256:7", "-f", "pcr7.bin"))
    c.seal("pcr7.policy")
    _policy(c, ("tpm2_policypcr", "-l", "sha256:7"))
    c.run("tpm2_pcrextend", "7:sha256=" + "c8" * 32)
    c.run("tpm2_unseal", "-c", "seal.ctx", "-p", "session:pol.ctx", ok=False, flush=True)
    c.run("tpm2_flushcontext", "pol.ctx")


SCENARIOS: dict[str, Callable[[Client], None]] = {
    "pcr-seal": pcr_seal,
    "pcr-or": pcr_or,
    "command-code": command_code,
    "policy-secret": policy_secret,
    "nv-policy": nv_policy,
    "cryptenroll": cryptenroll,
    "systemd-creds": systemd_creds,
    "pcr-changed": pcr_changed,
}

#: the [id=] epoch of each scenario's log (fixed, so a re-recording diffs cleanly)
EPOCHS = {name: 1700100000 + 100 * i for i, name in enumerate(SCENARIOS)}


def record(name: str, out: Path, work: Path) -> Path:
    """Record one scenario into ``out/<name>.log`` and ``out/<name>.truth.json``."""
    work.mkdir(parents=True, exist_ok=True)
    sw = realtpm.start_swtpm(work, prefix=f"[id={EPOCHS[name]}] ", startup_clear=False)
    client = Client(sw, work)
    try:
        SCENARIOS[name](client)
    finally:
        sw.stop()
    log = out / f"{name}.log"
    log.write_bytes(sw.log_path.read_bytes())
    truth = {"scenario": name, "doc": SCENARIOS[name].__doc__, "steps": client.steps,
             "files": client.files()}
    (out / f"{name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return log


def main(argv: list[str]) -> int:
    import tempfile

    out = Path(argv[0])
    names = argv[1:] or list(SCENARIOS)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(record(name, out, Path(tmp) / name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
