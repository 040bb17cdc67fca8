"""TPM 2.0 hash algorithms (TPM_ALG_ID): names, digest sizes, and the digest where
this Python can compute it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

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
#: the TPM's name -> hashlib's, where they differ
HASHLIB_NAME = {"sm3_256": "sm3"}


def _hasher(name: str) -> Callable[[bytes], bytes] | None:
    lib = HASHLIB_NAME.get(name, name)
    if lib not in hashlib.algorithms_available:
        return None
    return lambda data: hashlib.new(lib, data).digest()


#: TPM_ALG_ID -> digest function, for the algorithms this Python can compute
HASHES: dict[int, Callable[[bytes], bytes]] = {
    alg: fn for alg, (name, _) in ALGORITHMS.items() if (fn := _hasher(name)) is not None
}
COMPUTABLE = frozenset(HASHES)


def alg_name(alg: int) -> str:
    """``sha256`` for 0x000B; ``alg-0x1234`` for an algorithm not in the table."""
    known = ALGORITHMS.get(alg)
    return known[0] if known else f"alg-0x{alg:04x}"


def digest_size(alg: int) -> int | None:
    known = ALGORITHMS.get(alg)
    return known[1] if known else None


def digest(alg: int, data: bytes) -> bytes | None:
    """H_alg(data); None for an algorithm this Python cannot compute."""
    fn = HASHES.get(alg)
    return fn(data) if fn is not None else None
