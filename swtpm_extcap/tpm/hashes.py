"""TPM 2.0 hash algorithms (TPM_ALG_ID): names, digest sizes, and the digest where
this Python can compute it."""

from __future__ import annotations

import hashlib

#: TPM_ALG_ID -> (name, digest size)
ALGORITHMS: dict[int, tuple[str, int]] = {
    0x0004: ("sha1", 20),
    0x000B: ("sha256", 32),
    0x000C: ("sha384", 48),
    0x000D: ("sha512", 64),
    0x0012: ("sm3_256", 32),
    0x0027: ("sha3_256", 32),
    0x0028: ("sha3_384", 48),
    0x0029: ("sha3_512", 64),
}
_HASHLIB = {"sm3_256": "sm3"}
COMPUTABLE = frozenset(
    alg for alg, (name, _) in ALGORITHMS.items()
    if _HASHLIB.get(name, name) in hashlib.algorithms_available
)


def alg_name(alg: int) -> str:
    known = ALGORITHMS.get(alg)
    return known[0] if known else f"alg-0x{alg:04x}"


def digest_size(alg: int) -> int | None:
    known = ALGORITHMS.get(alg)
    return known[1] if known else None


def digest(alg: int, data: bytes) -> bytes | None:
    """H_alg(data); None for an algorithm this Python cannot compute."""
    if alg not in COMPUTABLE:
        return None
    name = ALGORITHMS[alg][0]
    return hashlib.new(_HASHLIB.get(name, name), data).digest()
