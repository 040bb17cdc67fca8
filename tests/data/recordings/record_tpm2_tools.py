#!/usr/bin/env python3
"""Record a varied tpm2-tools session against a real swtpm: its debug log and the client's pcap.

    tests/data/recordings/record_tpm2_tools.py [OUTDIR]    (default: next to this script)

Writes ``tpm2-tools-session-swtpm.log`` (swtpm's log, level 20) and
``tpm2-tools-session-client.pcapng`` (the same traffic as the client saw it,
through tpm2-tss's pcap TCTI: other addresses, one pcapng section per tool
run). The session touches well over 60 command codes of TPM 2.0: startup and
self tests, capabilities, random numbers, PCRs, hashing (one shot and
sequences), HMAC, keys of every kind (RSA, ECC, AES, HMAC, sealed data),
signing and verifying, RSA and AES encryption, ECDH, attestation (quote,
certify, certify creation, NV certify, time, audit digests), policy sessions
(PCR, password, auth value, command code, locality, secret, OR, NV, counter
timer, cpHash, name hash, signed, ticket, authorize, restart, get digest),
NV indices (ordinary, counter, bits, extend: define, write, read, lock,
change auth, undefine), hierarchy commands (change auth, dictionary attack,
clock, primary policy, clear control), duplication and import, credentials,
parameter encryption (an HMAC session with decrypt and encrypt), context save
and load, and commands that fail on purpose (a policy that does not hold:
TPM_RC_POLICY_FAIL; a wrong password: TPM_RC_AUTH_FAIL; a handle that is not
loaded: TPM_RC_HANDLE; a second Startup: TPM_RC_INITIALIZE; a locked NV index).

Needs swtpm, swtpm-tools, tpm2-tools, libtss2-tcti-pcap0 and openssl (Debian 12:
tpm2-tools 5.4, tpm2-tss 3.2.1, swtpm 0.7.1). Uses ``tests/realtpm.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
import realtpm  # noqa: E402

NV = "0x1500020"
NV_COUNTER = "0x1500021"
NV_BITS = "0x1500022"
NV_EXTEND = "0x1500023"
NV_POLICY = "0x1500024"
PERSISTENT = "0x81000010"

#: (command, must succeed); "!" marks the steps that fail on purpose
STEPS: list[tuple[str, bool]] = [
    ("tpm2_startup -c", False),  # swtpm started the TPM: TPM_RC_INITIALIZE
    ("tpm2_selftest -f", True),
    ("tpm2_incrementalselftest rsa ecc sha256 aes", True),
    ("tpm2_gettestresult", True),
    ("tpm2_getcap algorithms", True),
    ("tpm2_getcap commands", True),
    ("tpm2_getcap pcrs", True),
    ("tpm2_getcap properties-fixed", True),
    ("tpm2_getcap properties-variable", True),
    ("tpm2_getcap ecc-curves", True),
    ("tpm2_getcap handles-persistent", True),
    ("tpm2_getrandom --hex 16", True),
    ("sh -c 'head -c 64 /dev/urandom | tpm2_stirrandom'", True),
    ("tpm2_readclock", True),
    ("tpm2_setclock 100000000", True),
    ("tpm2_clockrateadjust s", True),
    ("tpm2_testparms rsa2048", True),
    ("tpm2_testparms aes999", False),
    ("tpm2_geteccparameters ecc256 -o ecc.params", True),
    # PCRs
    ("tpm2_pcrread sha1:0,1,2+sha256:0,1,2,3,7,16", True),
    ("tpm2_pcrextend 16:sha256=" + "ab" * 32 + ",sha1=" + "cd" * 20, True),
    ("tpm2_pcrevent 16 small.bin", True),
    ("tpm2_pcrevent 16 big.bin", True),  # > 1024 bytes: an event sequence
    ("tpm2_pcrreset 16", True),
    # hashing and HMAC
    ("tpm2_hash -g sha256 -C o -o hash.bin -t hash.tkt small.bin", True),
    ("tpm2_hash -g sha256 -C o -o bighash.bin big.bin", True),  # a hash sequence
    # keys
    ("tpm2_createprimary -C o -g sha256 -G rsa2048 -c primary.ctx", True),
    ("tpm2_readpublic -c primary.ctx -o primary.pub -n primary.name", True),
    ("tpm2_create -C primary.ctx -G rsa2048 -u rsa.pub -r rsa.priv", True),
    ("tpm2_load -C primary.ctx -u rsa.pub -r rsa.priv -c rsa.ctx", True),
    ("tpm2_create -C primary.ctx -G ecc256 -u ecc.pub -r ecc.priv -c ecc.ctx", True),
    ("tpm2_create -C primary.ctx -G aes128cfb -u aes.pub -r aes.priv -c aes.ctx", True),
    ("tpm2_create -C primary.ctx -G hmac -u hmac.pub -r hmac.priv -c hmac.ctx", True),
    ("tpm2_create -C primary.ctx -G rsa2048:rsassa-sha256:null -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign' -u ak.pub -r ak.priv -c ak.ctx", True),
    ("tpm2_createprimary -C e -g sha256 -G ecc256 -c ek.ctx", True),
    ("tpm2_evictcontrol -C o -c primary.ctx " + PERSISTENT, True),
    ("tpm2_getcap handles-persistent", True),
    ("tpm2_evictcontrol -C o -c " + PERSISTENT, True),
    ("tpm2_flushcontext 0x80ffffff", False),  # TPM_RC_HANDLE (or TPM_RC_VALUE)
    # signing, encryption, HMAC
    ("tpm2_sign -c rsa.ctx -g sha256 -o rsa.sig small.bin", True),
    ("tpm2_verifysignature -c rsa.ctx -g sha256 -m small.bin -s rsa.sig -t verify.tkt", True),
    ("tpm2_sign -c ecc.ctx -g sha256 -o ecc.sig small.bin", True),
    ("tpm2_rsaencrypt -c rsa.ctx -o rsa.enc small16.bin", True),
    ("tpm2_rsadecrypt -c rsa.ctx -o rsa.dec rsa.enc", True),
    ("tpm2_encryptdecrypt -c aes.ctx -o aes.enc small16.bin", True),
    ("tpm2_encryptdecrypt -d -c aes.ctx -o aes.dec aes.enc", True),
    ("tpm2_hmac -c hmac.ctx --hex small.bin", True),
    ("tpm2_hmac -c hmac.ctx --hex big.bin", True),  # an HMAC sequence
    ("tpm2_ecdhkeygen -u ecdh.pub -o ecdh.priv -c ecc.ctx", True),
    ("tpm2_ecdhzgen -c ecc.ctx -u ecdh.pub -o ecdh.z", True),
    ("tpm2_ecephemeral -u eph.q -t eph.ctr ecc256", True),
    # attestation
    ("tpm2_quote -c ak.ctx -l sha256:0,1,2,7 -q 1122334455667788 -m quote.msg -s quote.sig -o quote.pcrs -g sha256", True),
    ("tpm2_certify -C ak.ctx -c rsa.ctx -g sha256 -o certify.att -s certify.sig", True),
    ("tpm2_createprimary -C o -G ecc256 -c cprim.ctx --creation-data cprim.cd --creation-ticket cprim.tkt --creation-hash cprim.ch", True),
    ("tpm2_certifycreation -C ak.ctx -c cprim.ctx -d cprim.ch -t cprim.tkt -g sha256 -o cc.sig --attestation cc.att", True),
    ("tpm2_gettime -c ak.ctx -q 00ff -o time.sig --attestation time.att", True),
    ("tpm2_setcommandauditstatus -g sha256 TPM2_CC_GetRandom", True),
    ("tpm2_getcommandauditdigest -c ak.ctx -g sha256 -m audit.msg -s audit.sig", True),
    # NV
    ("tpm2_nvdefine " + NV + " -C o -s 32 -a 'ownerread|ownerwrite|authread|authwrite|writedefine' -p nvpass", True),
    ("tpm2_nvwrite " + NV + " -C o -i small32.bin", True),
    ("tpm2_nvread " + NV + " -C o -s 32", True),
    ("tpm2_nvread " + NV + " -C " + NV + " -P wrongpass -s 32", False),  # TPM_RC_AUTH_FAIL
    ("tpm2_nvreadpublic " + NV, True),
    ("tpm2_nvcertify -C ak.ctx -g sha256 -f plain --size 32 --offset 0 -c o -o nvcert.sig --attestation nvcert.att -q 00aa " + NV, True),
    ("tpm2_changeauth -c " + NV + " -p nvpass newpass", False),  # needs a policy session: TPM_RC_AUTH_TYPE
    ("tpm2_nvwritelock -C o " + NV, True),
    ("tpm2_nvwrite " + NV + " -C o -i small32.bin", False),  # TPM_RC_NV_LOCKED
    ("tpm2_nvreadlock -C o " + NV, False),
    ("tpm2_nvdefine " + NV_COUNTER + " -C o -s 8 -a 'nt=counter|ownerread|ownerwrite'", True),
    ("tpm2_nvincrement " + NV_COUNTER + " -C o", True),
    ("tpm2_nvread " + NV_COUNTER + " -C o -s 8", True),
    ("tpm2_nvdefine " + NV_BITS + " -C o -s 8 -a 'nt=bits|ownerread|ownerwrite'", True),
    ("tpm2_nvsetbits " + NV_BITS + " -C o -i 0x1111", True),
    ("tpm2_nvdefine " + NV_EXTEND + " -C o -s 32 -g sha256 -a 'nt=extend|ownerread|ownerwrite'", True),
    ("tpm2_nvextend " + NV_EXTEND + " -C o -i small32.bin", True),
    # policy sessions: a sealed secret bound to PCR 16, unsealed, then refused
    ("tpm2_startauthsession -S trial.ctx", True),
    ("tpm2_policypcr -S trial.ctx -l sha256:16 -L pcr.policy", True),
    ("tpm2_flushcontext trial.ctx", True),
    ("tpm2_create -C primary.ctx -u seal.pub -r seal.priv -L pcr.policy -i small32.bin -c seal.ctx", True),
    ("tpm2_startauthsession --policy-session -S policy.ctx", True),
    ("tpm2_policypcr -S policy.ctx -l sha256:16", True),
    ("tpm2_unseal -c seal.ctx -p session:policy.ctx", True),
    ("tpm2_flushcontext policy.ctx", True),
    ("tpm2_pcrextend 16:sha256=" + "ef" * 32, True),
    ("tpm2_startauthsession --policy-session -S policy2.ctx", True),
    ("tpm2_policypcr -S policy2.ctx -l sha256:16", True),
    ("tpm2_unseal -c seal.ctx -p session:policy2.ctx", False),  # TPM_RC_POLICY_FAIL
    ("tpm2_flushcontext policy2.ctx", True),
    # more policy commands (trial sessions)
    ("tpm2_startauthsession -S t2.ctx", True),
    ("tpm2_policypassword -S t2.ctx", True),
    ("tpm2_policyauthvalue -S t2.ctx", True),
    ("tpm2_policycommandcode -S t2.ctx TPM2_CC_Unseal", True),
    ("tpm2_policylocality -S t2.ctx zero", True),
    ("tpm2_policycountertimer -S t2.ctx -L ct.policy --ult 60000", True),
    ("tpm2_policycphash -S t2.ctx --cphash cphash.bin", True),
    ("tpm2_policynvwritten -S t2.ctx s", True),
    ("tpm2_policyrestart -S t2.ctx", True),
    ("tpm2_policysecret -S t2.ctx -c o -L secret.policy", True),
    ("tpm2_policyrestart -S t2.ctx", True),
    ("tpm2_policynv -S t2.ctx -C o -i small8.bin " + NV_COUNTER + " ult -L nv.policy", False),
    ("tpm2_policyrestart -S t2.ctx", True),
    ("tpm2_policyor -S t2.ctx -L or.policy -l sha256:pcr.policy,secret.policy", True),
    ("tpm2_policyrestart -S t2.ctx", True),
    ("tpm2_policynamehash -S t2.ctx -n namehash.bin -L namehash.policy", True),
    ("tpm2_policyrestart -S t2.ctx", True),
    ("tpm2_policytemplate -S t2.ctx --template-hash small32.bin -L template.policy", True),
    ("tpm2_policyrestart -S t2.ctx", True),
    ("tpm2_policyduplicationselect -S t2.ctx -N primary.name -L dup.policy", False),
    ("tpm2_flushcontext t2.ctx", True),
    # policy signed / authorize / ticket: an external key signs the session's nonce
    ("openssl genrsa -out signer.pem 2048", True),
    ("openssl rsa -in signer.pem -pubout -out signer.pub.pem", True),
    ("tpm2_loadexternal -C o -G rsa -u signer.pub.pem -c signer.ctx -n signer.name", True),
    ("tpm2_startauthsession -S ps.ctx --policy-session", True),
    ("sh -c 'tpm2_policysigned -S ps.ctx -g sha256 -c signer.ctx --raw-data nonce.raw -t 0 && openssl dgst -sha256 -sign signer.pem -out nonce.sig nonce.raw && tpm2_policysigned -S ps.ctx -g sha256 -s nonce.sig -f rsassa -c signer.ctx -t -60 --timeout psigned.timeout --ticket psigned.tkt'", False),
    ("tpm2_flushcontext ps.ctx", True),
    ("tpm2_startauthsession -S auth.ctx", True),
    ("tpm2_policyauthorize -S auth.ctx -L authorize.policy -n signer.name -i pcr.policy", False),
    ("tpm2_policygetdigest -S auth.ctx -o getdigest.bin", False),
    ("tpm2_flushcontext auth.ctx", True),
    # parameter encryption: a salted HMAC session with decrypt and encrypt
    ("tpm2_startauthsession --hmac-session -c primary.ctx -S enc.ctx", True),
    ("tpm2_sessionconfig enc.ctx --enable-encrypt --enable-decrypt", True),
    ("tpm2_getrandom -S enc.ctx --hex 16", True),
    ("tpm2_nvwrite " + NV_EXTEND + " -C o -i small32.bin -S enc.ctx", False),
    ("tpm2_create -C primary.ctx -u encsealed.pub -r encsealed.priv -i small32.bin -S enc.ctx", True),
    ("tpm2_flushcontext enc.ctx", True),
    # duplication and import, credentials
    ("tpm2_startauthsession -S dtrial.ctx", True),
    ("tpm2_policycommandcode -S dtrial.ctx -L dup.policy TPM2_CC_Duplicate", True),
    ("tpm2_flushcontext dtrial.ctx", True),
    ("tpm2_create -C primary.ctx -g sha256 -G rsa2048 -u dupkey.pub -r dupkey.priv -L dup.policy -a 'sensitivedataorigin|userwithauth|decrypt|sign' -c dupkey.ctx", True),
    ("tpm2_startauthsession --policy-session -S dsess.ctx", True),
    ("tpm2_policycommandcode -S dsess.ctx TPM2_CC_Duplicate", True),
    ("tpm2_duplicate -C ek.ctx -c dupkey.ctx -G null -p session:dsess.ctx -r dup.dpriv -s dup.seed", True),
    ("tpm2_flushcontext dsess.ctx", True),
    ("tpm2_import -C ek.ctx -u dupkey.pub -i dup.dpriv -r imported.priv -s dup.seed", False),
    ("tpm2_readpublic -c ek.ctx -o ek.pub -n ek.name", True),
    ("tpm2_readpublic -c ak.ctx -n ak.name", True),
    ("tpm2_makecredential -e ek.pub -s small16.bin -n $(xxd -p -c 256 ak.name) -o cred.out", True),
    ("tpm2_startauthsession --policy-session -S ekpol.ctx", True),
    ("tpm2_policysecret -S ekpol.ctx -c e", True),
    ("tpm2_activatecredential -c ak.ctx -C ek.ctx -i cred.out -o cred.dec -P session:ekpol.ctx", False),
    ("tpm2_flushcontext ekpol.ctx", True),
    ("tpm2_changeauth -C primary.ctx -c rsa.ctx -r rsa.newpriv newkeypass", True),
    # hierarchy
    ("tpm2_dictionarylockout -s -n 5 -t 6 -l 10", True),
    ("tpm2_dictionarylockout -c", True),
    ("tpm2_setprimarypolicy -C o -L pcr.policy -g sha256", True),
    ("tpm2_changeauth -c o ownerpass", True),
    ("tpm2_getcap properties-variable", True),
    ("tpm2_changeauth -c o -p ownerpass", True),
    ("tpm2_clearcontrol -C l s", True),
    ("tpm2_clearcontrol -C p c", True),
    # clean up NV and finish
    ("tpm2_nvundefine " + NV + " -C o", True),
    ("tpm2_nvundefine " + NV_COUNTER + " -C o", True),
    ("tpm2_nvundefine " + NV_BITS + " -C o", True),
    ("tpm2_nvundefine " + NV_EXTEND + " -C o", True),
    ("tpm2_flushcontext -t", True),
    ("tpm2_flushcontext -s", True),
    ("tpm2_hierarchycontrol -C p shEnable clear", True),
    ("tpm2_getcap handles-nv-index", True),
    ("tpm2_shutdown -c", True),
]


def prepare(cwd: Path) -> None:
    (cwd / "small.bin").write_bytes(b"swtpm-extcap test data\n" * 4)
    (cwd / "small8.bin").write_bytes(bytes(8))
    (cwd / "small16.bin").write_bytes(bytes(range(16)))
    (cwd / "small32.bin").write_bytes(bytes(range(32)))
    (cwd / "big.bin").write_bytes(bytes(i % 251 for i in range(4000)))
    (cwd / "cphash.bin").write_bytes(b"\x00\x20" + bytes(range(32, 64)))  # a TPM2B_DIGEST
    (cwd / "namehash.bin").write_bytes(bytes(range(64, 96)))


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    missing = realtpm.missing_tools("swtpm", "tpm2_startup", "tshark", "openssl", "xxd")
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="swtpm-session.") as tmp:
        work = Path(tmp)
        cwd = work / "files"
        cwd.mkdir()
        prepare(cwd)
        pcap = work / "client.pcapng"
        sw = realtpm.start_swtpm(work / "tpm")
        failures = []
        try:
            for command, must in STEPS:
                proc = realtpm.run_tpm2(["sh", "-c", command], sw, pcap=pcap, cwd=cwd, check=False)
                if proc.returncode != 0:
                    failures.append(command)
                    if must:
                        print(f"FAILED (expected to work): {command}\n{proc.stderr}", file=sys.stderr)
                # no resource manager: objects a tool loaded stay loaded (3 slots); the
                # next tool loads what it needs from its context file again
                if "tpm2_" in command and "flushcontext" not in command:
                    realtpm.run_tpm2(["tpm2_flushcontext", "-t"], sw, pcap=pcap, cwd=cwd, check=False)
        finally:
            sw.stop()
        payloads = realtpm.read_oracle_payloads(pcap)
        codes = {int.from_bytes(p[6:10], "big") for d, p in payloads if d == "command" and len(p) >= 10}
        shutil.copy(sw.log_path, out / "tpm2-tools-session-swtpm.log")
        shutil.copy(pcap, out / "tpm2-tools-session-client.pcapng")
    print(f"{len(STEPS)} tool runs, {len(failures)} failed (some on purpose), {len(payloads)} TPM messages,"
          f" {len(codes)} distinct command codes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
