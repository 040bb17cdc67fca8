"""TPM 2.0 response codes (TPM_RC): the name, and which handle, session or parameter
a format-one code points at."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .tables import RESPONSE_CODES

RC_FMT1 = 0x080
RC_P = 0x040
RC_S = 0x800
RC_VER1 = 0x100
RC_WARN = 0x900

POLICY_FAIL = RESPONSE_CODES["POLICY_FAIL"]
POLICY_CC = RESPONSE_CODES["POLICY_CC"]
PCR_CHANGED = RESPONSE_CODES["PCR_CHANGED"]
AUTH_FAIL = RESPONSE_CODES["AUTH_FAIL"]
BAD_AUTH = RESPONSE_CODES["BAD_AUTH"]
AUTH_UNAVAILABLE = RESPONSE_CODES["AUTH_UNAVAILABLE"]
AUTH_TYPE = RESPONSE_CODES["AUTH_TYPE"]
AUTH_MISSING = RESPONSE_CODES["AUTH_MISSING"]
VALUE = RESPONSE_CODES["VALUE"]
EXPIRED = RESPONSE_CODES["EXPIRED"]
LOCALITY = RESPONSE_CODES["LOCALITY"]
LOCKOUT = RESPONSE_CODES["LOCKOUT"]
CPHASH = RESPONSE_CODES["CPHASH"]
POLICY = RESPONSE_CODES["POLICY"]

#: codes about authorization: the failures ``explain`` explains on any command
AUTHORIZATION = frozenset({
    POLICY_FAIL, POLICY_CC, PCR_CHANGED, AUTH_FAIL, BAD_AUTH, AUTH_UNAVAILABLE, AUTH_TYPE,
    AUTH_MISSING, EXPIRED, LOCALITY, LOCKOUT, CPHASH,
})


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """A decoded TPM_RC: ``base`` without its handle/session/parameter number."""

    rc: int
    base: int
    name: str
    session: int = 0  # 1-based session number, 0 when none
    handle: int = 0
    parameter: int = 0

    def __str__(self) -> str:
        where = (f", session {self.session}" if self.session else f", handle {self.handle}"
                 if self.handle else f", parameter {self.parameter}" if self.parameter else "")
        return f"{self.name}{where}"


@lru_cache(maxsize=None)
def _names() -> dict[int, str]:
    return {value: f"TPM_RC_{name}" for name, value in RESPONSE_CODES.items()}


def decode(rc: int) -> ResponseCode:
    """``0x99D`` -> TPM_RC_POLICY_FAIL, session 1."""
    if rc & RC_FMT1:
        base = RC_FMT1 + (rc & 0x3F)
        n = (rc >> 8) & 0xF
        name = _names().get(base, f"TPM_RC 0x{base:03x}")
        if rc & RC_P:
            return ResponseCode(rc, base, name, parameter=n)
        if n & 0x8:
            return ResponseCode(rc, base, name, session=n & 0x7)
        return ResponseCode(rc, base, name, handle=n & 0x7)
    base = rc & 0xFFF
    return ResponseCode(rc, base, _names().get(base, f"TPM_RC 0x{rc:03x}"))
