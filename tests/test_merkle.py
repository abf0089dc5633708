"""Tests for api.audit.merkle, the RFC 6962 / RFC 9162 Merkle tree of the audit log.

Modelled on transparency-dev/merkle: known-answer vectors (its RFC 6962 test
tree), a plain recursive reference straight from the RFC text to cross-check
the fast code, every valid proof for small trees verified, and mutated proofs
that must fail with a specific error type.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import pytest

from api.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleLog,
    ProofError,
    ProofShapeError,
    RootMismatchError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

S = ProofShapeError
R = RootMismatchError


# ---------------------------------------------------------------------------
# Plain reference, straight from RFC 6962 section 2.1 (recursive, on entries).
# Deliberately slow and obvious; hashes with hashlib directly, not api.audit.merkle.
# ---------------------------------------------------------------------------
def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) (RFC 6962 2.1)."""
    n = len(d)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + d[0])
    k = _split(n)
    return _sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 6962 2.1.1), 0 <= m < n."""
    n = len(d)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (RFC 6962 2.1.2)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _split(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 6962 2.1.2), 0 < m < n."""
    return ref_subproof(m, d, True)


# ---------------------------------------------------------------------------
# Test data: the RFC 6962 test tree of transparency-dev/merkle, then distinct
# filler entries so size-mutated proofs (up to 2 * 64) have real roots.
# ---------------------------------------------------------------------------
RFC_ENTRIES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC_ROOTS_HEX = [  # sizes 1..8; authoritative (transparency-dev/merkle)
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MAX_SIZE = 64
ENTRIES = RFC_ENTRIES + [b"entry %d" % i for i in range(len(RFC_ENTRIES), 2 * MAX_SIZE + 2)]
LEAF_HASHES = [leaf_hash(e) for e in ENTRIES]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
WRONG_LEAF = leaf_hash(b"WrongLeaf")


def h(hex_digest: str) -> bytes:
    return bytes.fromhex(hex_digest)


@lru_cache(maxsize=None)
def ref_root_at(size: int) -> bytes:
    return ref_mth(ENTRIES[:size])


@lru_cache(maxsize=None)
def ref_path_at(index: int, size: int) -> tuple[bytes, ...]:
    return tuple(ref_path(index, ENTRIES[:size]))


@lru_cache(maxsize=None)
def ref_proof_at(first: int, second: int) -> tuple[bytes, ...]:
    return tuple(ref_proof(first, ENTRIES[:second]))


@lru_cache(maxsize=None)
def log_of(size: int) -> MerkleLog:
    return MerkleLog(LEAF_HASHES[:size])


def flip(digest: bytes, bit: int = 3) -> bytes:
    """Copy of ``digest`` with one bit of its first byte flipped."""
    return bytes([digest[0] ^ (1 << bit)]) + digest[1:]


def outcome(fn: Callable[[], None]) -> type[ProofError] | None:
    """The ProofError subclass ``fn`` raises, or None if it returns."""
    try:
        fn()
    except ProofError as exc:
        return type(exc)
    return None


# ---------------------------------------------------------------------------
# Hashing and known answers
# ---------------------------------------------------------------------------
def test_empty_root_is_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == EMPTY_ROOT_HEX
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MerkleLog().root() == EMPTY_ROOT
    assert MerkleLog(LEAF_HASHES[:3]).root(0) == EMPTY_ROOT
    assert ref_mth([]) == EMPTY_ROOT


def test_leaf_and_node_hash_use_domain_separation():
    assert leaf_hash(b"abc") == _sha256(b"\x00abc")
    assert leaf_hash(bytearray(b"abc")) == leaf_hash(memoryview(b"abc")) == leaf_hash(b"abc")
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == _sha256(b"\x01" + left + right)
    assert node_hash(left, right) != node_hash(right, left)
    assert len(EMPTY_ROOT) == HASH_SIZE == 32


@pytest.mark.parametrize("size", range(1, 9), ids=lambda n: f"size={n}")
def test_rfc6962_roots(size):
    want = h(RFC_ROOTS_HEX[size - 1])
    leaves = LEAF_HASHES[:size]
    assert root_from_leaf_hashes(leaves) == want
    assert MerkleLog(leaves).root() == want
    assert MerkleLog(LEAF_HASHES[:8]).root(size) == want
    assert ref_mth(RFC_ENTRIES[:size]) == want


# Inclusion proofs from transparency-dev/merkle proof/verify_test.go; it
# numbers leaves from 1, these indices are zero-based.
INCLUSION_VECTORS = {
    "leaf0_of_1": (0, 1, []),
    "leaf0_of_8": (0, 8, [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]),
    "leaf5_of_8": (5, 8, [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
    "leaf2_of_3": (2, 3, [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    ]),
    "leaf1_of_5": (1, 5, [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]),
}

# Consistency proofs from the same file.
CONSISTENCY_VECTORS = {
    "1_to_1": (1, 1, []),
    "1_to_8": (1, 8, [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]),
    "6_to_8": (6, 8, [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
    "2_to_5": (2, 5, [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]),
    "6_to_7": (6, 7, [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
}


@pytest.mark.parametrize("name", INCLUSION_VECTORS)
def test_known_inclusion_proofs(name):
    index, size, proof_hex = INCLUSION_VECTORS[name]
    want = [h(x) for x in proof_hex]
    leaves = LEAF_HASHES[:8]
    assert inclusion_proof(index, size, leaves) == want
    assert MerkleLog(leaves).inclusion_proof(index, size) == want
    assert ref_path(index, RFC_ENTRIES[:size]) == want
    verify_inclusion(leaves[index], index, size, want, h(RFC_ROOTS_HEX[size - 1]))


@pytest.mark.parametrize("name", CONSISTENCY_VECTORS)
def test_known_consistency_proofs(name):
    first, second, proof_hex = CONSISTENCY_VECTORS[name]
    want = [h(x) for x in proof_hex]
    leaves = LEAF_HASHES[:8]
    assert consistency_proof(first, second, leaves) == want
    assert MerkleLog(leaves).consistency_proof(first, second) == want
    if first < second:
        assert ref_proof(first, RFC_ENTRIES[:second]) == want
    verify_consistency(first, second, h(RFC_ROOTS_HEX[first - 1]), h(RFC_ROOTS_HEX[second - 1]), want)


# ---------------------------------------------------------------------------
# Every valid proof for sizes 1..64, and fast code == reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1), ids=lambda n: f"size={n}")
def test_every_inclusion_proof_verifies_and_matches_reference(size):
    root = ref_root_at(size)
    log = log_of(size)
    assert root_from_leaf_hashes(LEAF_HASHES[:size]) == root
    assert log.root() == root
    assert log_of(MAX_SIZE).root(size) == root
    for index in range(size):
        proof = inclusion_proof(index, size, LEAF_HASHES)
        assert proof == list(ref_path_at(index, size)), f"{index=}"
        assert log.inclusion_proof(index, size) == proof, f"{index=}"
        assert log_of(MAX_SIZE).inclusion_proof(index, size) == proof, f"{index=}"
        verify_inclusion(LEAF_HASHES[index], index, size, proof, root)
        assert root_from_inclusion_proof(LEAF_HASHES[index], index, size, proof) == root


@pytest.mark.parametrize("second", range(1, MAX_SIZE + 1), ids=lambda n: f"second={n}")
def test_every_consistency_proof_verifies_and_matches_reference(second):
    second_root = ref_root_at(second)
    for first in range(0, second + 1):
        proof = consistency_proof(first, second, LEAF_HASHES)
        want = [] if first in (0, second) else list(ref_proof_at(first, second))
        assert proof == want, f"{first=}"
        assert log_of(second).consistency_proof(first, second) == proof, f"{first=}"
        assert log_of(MAX_SIZE).consistency_proof(first, second) == proof, f"{first=}"
        verify_consistency(first, second, ref_root_at(first), second_root, proof)


def test_incremental_log_matches_reference_at_every_size():
    log = MerkleLog()
    for i, leaf in enumerate(LEAF_HASHES):
        assert log.append(leaf) == i
        assert log.root() == ref_root_at(i + 1), f"size={i + 1}"
    assert len(log) == log.size == len(LEAF_HASHES)
    for size in range(len(LEAF_HASHES) + 1):  # earlier roots stay available
        assert log.root(size) == ref_root_at(size), f"{size=}"
    assert log.leaf_hash(5) == LEAF_HASHES[5]
    extended = MerkleLog(LEAF_HASHES[:10])
    extended.extend(LEAF_HASHES[10:])
    assert extended.root() == log.root()


def test_random_larger_trees_against_reference():
    rng = random.Random(6962)
    entries = [b"audit %d" % i for i in range(1500)]
    leaves = [leaf_hash(e) for e in entries]
    log = MerkleLog(leaves)
    for _ in range(25):
        size = rng.randint(1, len(entries))
        index = rng.randrange(size)
        first = rng.randint(1, size)
        root = ref_mth(entries[:size])
        assert log.root(size) == root == root_from_leaf_hashes(leaves[:size])
        proof = log.inclusion_proof(index, size)
        assert proof == ref_path(index, entries[:size])
        verify_inclusion(leaves[index], index, size, proof, root)
        cproof = log.consistency_proof(first, size)
        assert cproof == ([] if first == size else ref_proof(first, entries[:size]))
        verify_consistency(first, size, log.root(first), root, cproof)


# ---------------------------------------------------------------------------
# Mutated proofs, table-driven (known vectors, expected error written out)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Incl:
    leaf_hash: bytes
    index: int
    size: int
    proof: tuple[bytes, ...]
    root: bytes

    def verify(self) -> None:
        verify_inclusion(self.leaf_hash, self.index, self.size, list(self.proof), self.root)


@dataclass(frozen=True)
class Cons:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: tuple[bytes, ...]

    def verify(self) -> None:
        verify_consistency(self.first, self.second, self.first_root, self.second_root, list(self.proof))


def _incl_vector(name: str) -> Incl:
    index, size, proof_hex = INCLUSION_VECTORS[name]
    return Incl(LEAF_HASHES[index], index, size, tuple(h(x) for x in proof_hex), h(RFC_ROOTS_HEX[size - 1]))


def _cons_vector(name: str) -> Cons:
    first, second, proof_hex = CONSISTENCY_VECTORS[name]
    return Cons(first, second, h(RFC_ROOTS_HEX[first - 1]), h(RFC_ROOTS_HEX[second - 1]),
                tuple(h(x) for x in proof_hex))


INCLUSION_MUTATIONS: dict[str, Callable[[Incl], Incl]] = {
    "index-1": lambda c: replace(c, index=c.index - 1),
    "index+1": lambda c: replace(c, index=c.index + 1),
    "size*2": lambda c: replace(c, size=c.size * 2),
    "size/2": lambda c: replace(c, size=c.size // 2),
    "size+1": lambda c: replace(c, size=c.size + 1),
    "size=0": lambda c: replace(c, size=0),
    "index=size": lambda c: replace(c, index=c.size),
    "index=-1": lambda c: replace(c, index=-1),
    "wrong_leaf": lambda c: replace(c, leaf_hash=WRONG_LEAF),
    "short_leaf": lambda c: replace(c, leaf_hash=c.leaf_hash[:-1]),
    "empty_root": lambda c: replace(c, root=EMPTY_ROOT),
    "random_root": lambda c: replace(c, root=SOME_HASH),
    "append_root": lambda c: replace(c, proof=c.proof + (c.root,)),
    "append_empty": lambda c: replace(c, proof=c.proof + (b"",)),
    "prepend_root": lambda c: replace(c, proof=(c.root,) + c.proof),
    "remove_last": lambda c: replace(c, proof=c.proof[:-1]),
    "insert_after_0": lambda c: replace(c, proof=c.proof[:1] + (SOME_HASH,) + c.proof[1:]),
}
# Mutations whose effect depends on the vector, worked out by hand from the
# proof lengths (len PATH(i, n) = bits below where i and n-1 part, plus set
# bits of i above). leaf1_of_5 "size+1" is missing on purpose: it verifies,
# see test_size_is_bound_by_the_checkpoint_not_by_the_proof.
INCLUSION_EXPECTED = {
    "leaf0_of_8": {"index-1": S, "index+1": R, "size*2": S, "size/2": S, "size+1": S},
    "leaf5_of_8": {"index-1": R, "index+1": R, "size*2": S, "size/2": S, "size+1": S},
    "leaf2_of_3": {"index-1": S, "index+1": S, "size*2": S, "size/2": S, "size+1": S},
    "leaf1_of_5": {"index-1": R, "index+1": R, "size*2": S, "size/2": S},
}
INCLUSION_COMMON = {
    "size=0": S, "index=size": S, "index=-1": S, "wrong_leaf": R, "short_leaf": S,
    "empty_root": R, "random_root": R, "append_root": S, "append_empty": S,
    "prepend_root": S, "remove_last": S, "insert_after_0": S,
}


def _inclusion_table():
    for name, varying in INCLUSION_EXPECTED.items():
        vector = _incl_vector(name)
        for mutation, error in {**varying, **INCLUSION_COMMON}.items():
            yield pytest.param(INCLUSION_MUTATIONS[mutation](vector), error, id=f"{name}-{mutation}")
        for i in range(len(vector.proof)):
            proof = list(vector.proof)
            proof[i] = flip(proof[i])
            yield pytest.param(replace(vector, proof=tuple(proof)), R, id=f"{name}-flip_proof[{i}]")


@pytest.mark.parametrize(("case", "error"), list(_inclusion_table()))
def test_mutated_inclusion_proof_fails(case, error):
    with pytest.raises(error):
        case.verify()


CONSISTENCY_MUTATIONS: dict[str, Callable[[Cons], Cons]] = {
    "first-1": lambda c: replace(c, first=c.first - 1),
    "first+1": lambda c: replace(c, first=c.first + 1),
    "second*2": lambda c: replace(c, second=c.second * 2),
    "second/2": lambda c: replace(c, second=c.second // 2),
    "second+1": lambda c: replace(c, second=c.second + 1),
    "first>second": lambda c: replace(c, first=c.second, second=c.first),
    "second=0": lambda c: replace(c, second=0),
    "roots_swapped": lambda c: replace(c, first_root=c.second_root, second_root=c.first_root),
    "wrong_first_root": lambda c: replace(c, first_root=SOME_HASH),
    "wrong_second_root": lambda c: replace(c, second_root=SOME_HASH),
    "short_first_root": lambda c: replace(c, first_root=c.first_root[:-1]),
    "empty_proof": lambda c: replace(c, proof=()),
    "append_first_root": lambda c: replace(c, proof=c.proof + (c.first_root,)),
    "append_second_root": lambda c: replace(c, proof=c.proof + (c.second_root,)),
    "append_empty": lambda c: replace(c, proof=c.proof + (b"",)),
    "prepend_proof[0]": lambda c: replace(c, proof=c.proof[:1] + c.proof),
    "prepend_first_root": lambda c: replace(c, proof=(c.first_root,) + c.proof),
    "remove_last": lambda c: replace(c, proof=c.proof[:-1]),
}
# By hand from len PROOF(m, n); "second+1" is missing for 2_to_5 and 6_to_7
# because it verifies (see test_size_is_bound_by_the_checkpoint_not_by_the_proof).
CONSISTENCY_EXPECTED = {
    "1_to_8": {"first-1": S, "first+1": S, "second*2": S, "second/2": S, "second+1": S},
    "6_to_8": {"first-1": S, "first+1": S, "second*2": S, "second/2": S, "second+1": S},
    "2_to_5": {"first-1": S, "first+1": S, "second*2": S, "second/2": S},
    "6_to_7": {"first-1": S, "first+1": S, "second*2": S, "second/2": S},
}
CONSISTENCY_COMMON = {
    "first>second": S, "second=0": S, "roots_swapped": R, "wrong_first_root": R,
    "wrong_second_root": R, "short_first_root": S, "empty_proof": S, "append_first_root": S,
    "append_second_root": S, "append_empty": S, "prepend_proof[0]": S,
    "prepend_first_root": S, "remove_last": S,
}


def _consistency_table():
    for name, varying in CONSISTENCY_EXPECTED.items():
        vector = _cons_vector(name)
        for mutation, error in {**varying, **CONSISTENCY_COMMON}.items():
            yield pytest.param(CONSISTENCY_MUTATIONS[mutation](vector), error, id=f"{name}-{mutation}")
        for i in range(len(vector.proof)):
            proof = list(vector.proof)
            proof[i] = flip(proof[i], bit=4)
            yield pytest.param(replace(vector, proof=tuple(proof)), R, id=f"{name}-flip_proof[{i}]")


@pytest.mark.parametrize(("case", "error"), list(_consistency_table()))
def test_mutated_consistency_proof_fails(case, error):
    with pytest.raises(error):
        case.verify()


def test_size_is_bound_by_the_checkpoint_not_by_the_proof():
    """Documented limit: the same hashes can be a well-formed proof for a
    neighbouring size and lead to the *old* root. Harmless because a signed
    checkpoint binds size and root; callers must take both from it."""
    leaf1_of_5 = _incl_vector("leaf1_of_5")
    replace(leaf1_of_5, size=6).verify()
    with pytest.raises(R):  # against the real 6-leaf root it fails
        replace(leaf1_of_5, size=6, root=ref_root_at(6)).verify()
    for name in ("2_to_5", "6_to_7"):
        vector = _cons_vector(name)
        replace(vector, second=vector.second + 1).verify()
        with pytest.raises(R):
            replace(vector, second=vector.second + 1, second_root=ref_root_at(vector.second + 1)).verify()


# ---------------------------------------------------------------------------
# Mutated proofs, exhaustively for sizes 1..64. A size mutation is paired with
# the real root of the mutated size (a checkpoint lying consistently); the
# expected error comes from the reference: ProofShapeError when the request
# is impossible or the proof length differs from the reference proof for the
# mutated sizes, RootMismatchError otherwise.
# ---------------------------------------------------------------------------
def _expected_inclusion_error(index: int, size: int, proof_len: int) -> type[ProofError]:
    if size <= 0 or not 0 <= index < size or proof_len != len(ref_path_at(index, size)):
        return S
    return R


def _expected_consistency_error(first: int, second: int, proof_len: int) -> type[ProofError]:
    if first < 0 or first > second:
        return S
    if first in (0, second):
        return S if proof_len else R
    return S if proof_len != len(ref_proof_at(first, second)) else R


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1), ids=lambda n: f"size={n}")
def test_every_mutated_inclusion_proof_fails(size):
    root = ref_root_at(size)
    wrong = []
    for index in range(size):
        leaf = LEAF_HASHES[index]
        proof = ref_path_at(index, size)
        probes = []  # (description, leaf, index, size, proof, root, expected)
        for i in (index - 1, index + 1):
            probes.append((f"index {index}->{i}", leaf, i, size, proof, root,
                           _expected_inclusion_error(i, size, len(proof))))
        for n in (size * 2, size // 2, size + 1):
            probes.append((f"size {size}->{n}", leaf, index, n, proof, ref_root_at(n),
                           _expected_inclusion_error(index, n, len(proof))))
        probes += [
            ("wrong leaf", WRONG_LEAF, index, size, proof, root, R),
            ("other leaf", LEAF_HASHES[size], index, size, proof, root, R),
            ("older root", leaf, index, size, proof, ref_root_at(size - 1), R),
            ("appended hash", leaf, index, size, proof + (root,), root, S),
            ("prepended hash", leaf, index, size, (SOME_HASH,) + proof, root, S),
        ]
        if proof:
            probes.append(("removed hash", leaf, index, size, proof[:-1], root, S))
        for i in range(len(proof)):
            flipped = proof[:i] + (flip(proof[i]),) + proof[i + 1:]
            probes.append((f"flipped proof[{i}]", leaf, index, size, flipped, root, R))
        for desc, lh, i, n, p, r, expected in probes:
            got = outcome(lambda: verify_inclusion(lh, i, n, list(p), r))
            if got is not expected:
                wrong.append(f"{index=}: {desc}: got {got and got.__name__}, want {expected.__name__}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("second", range(2, MAX_SIZE + 1), ids=lambda n: f"second={n}")
def test_every_mutated_consistency_proof_fails(second):
    wrong = []
    second_root = ref_root_at(second)
    for first in range(1, second):
        first_root = ref_root_at(first)
        proof = ref_proof_at(first, second)
        n = len(proof)
        probes = []  # (description, first, second, first_root, second_root, proof, expected)
        for m in (first - 1, first + 1):
            probes.append((f"first {first}->{m}", m, second, ref_root_at(m), second_root, proof,
                           _expected_consistency_error(m, second, n)))
        for m in (second * 2, second // 2, second + 1):
            probes.append((f"second {second}->{m}", first, m, first_root, ref_root_at(m), proof,
                           _expected_consistency_error(first, m, n)))
        probes += [
            ("first > second", second, first, second_root, first_root, proof, S),
            ("roots swapped", first, second, second_root, first_root, proof, R),
            ("wrong first root", first, second, SOME_HASH, second_root, proof, R),
            ("wrong second root", first, second, first_root, SOME_HASH, proof, R),
            ("empty proof", first, second, first_root, second_root, (), S),
            ("appended hash", first, second, first_root, second_root, proof + (second_root,), S),
            ("prepended proof[0]", first, second, first_root, second_root, proof[:1] + proof, S),
            ("removed hash", first, second, first_root, second_root, proof[:-1], S),
        ]
        for i in range(n):
            flipped = proof[:i] + (flip(proof[i], bit=4),) + proof[i + 1:]
            probes.append((f"flipped proof[{i}]", first, second, first_root, second_root, flipped, R))
        for desc, f, s, fr, sr, p, expected in probes:
            got = outcome(lambda: verify_consistency(f, s, fr, sr, list(p)))
            if got is not expected:
                wrong.append(f"{first=}: {desc}: got {got and got.__name__}, want {expected.__name__}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------
# Edge cases and conventions (transparency-dev/merkle TestVerifyConsistency /
# TestVerifyInclusion, plus our stricter size-0 root)
# ---------------------------------------------------------------------------
X, Y = leaf_hash(b"x"), leaf_hash(b"y")


@pytest.mark.parametrize(
    ("first", "second", "first_root", "second_root", "proof", "error"),
    [
        pytest.param(0, 0, EMPTY_ROOT, EMPTY_ROOT, [], None, id="0_0_equal_roots"),
        pytest.param(0, 0, EMPTY_ROOT, X, [], R, id="0_0_different_roots"),
        pytest.param(0, 1, EMPTY_ROOT, X, [], None, id="0_1_any_second_root"),
        pytest.param(0, 5, EMPTY_ROOT, Y, [], None, id="0_5_any_second_root"),
        pytest.param(0, 1, X, X, [], R, id="0_1_first_root_not_empty_root"),
        pytest.param(1, 1, X, X, [], None, id="1_1_equal_roots"),
        pytest.param(1, 1, X, Y, [], R, id="1_1_different_roots"),
        pytest.param(1, 0, X, Y, [], S, id="1_0_first_gt_second"),
        pytest.param(2, 1, X, Y, [], S, id="2_1_first_gt_second"),
        pytest.param(-1, 1, X, Y, [], S, id="negative_first"),
        pytest.param(1, 2, X, Y, [], S, id="1_2_empty_proof"),
        pytest.param(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], S, id="0_0_nonempty_proof"),
        pytest.param(0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], S, id="0_1_nonempty_proof"),
        pytest.param(1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], S, id="1_1_nonempty_proof"),
        pytest.param(1, 1, b"don't care", b"don't care", [], S, id="1_1_roots_not_32_bytes"),
    ],
)
def test_consistency_edge_cases(first, second, first_root, second_root, proof, error):
    assert outcome(lambda: verify_consistency(first, second, first_root, second_root, proof)) is error


@pytest.mark.parametrize(
    ("index", "size", "leaf", "root", "error"),
    [
        pytest.param(0, 0, SOME_HASH, EMPTY_ROOT, S, id="size0"),
        pytest.param(1, 0, SOME_HASH, EMPTY_ROOT, S, id="index1_size0"),
        pytest.param(2, 1, SOME_HASH, EMPTY_ROOT, S, id="index2_size1"),
        pytest.param(1, 1, X, X, S, id="index_eq_size"),
        pytest.param(0, -1, X, X, S, id="negative_size"),
        pytest.param(0, 1, SOME_HASH, EMPTY_ROOT, R, id="size1_wrong_root"),
        pytest.param(0, 1, X, X, None, id="size1_leaf_is_root"),
        pytest.param(0, 1, X, b"", S, id="size1_empty_root"),
        pytest.param(0, 1, b"", X, S, id="size1_empty_leaf"),
    ],
)
def test_inclusion_edge_cases(index, size, leaf, root, error):
    assert outcome(lambda: verify_inclusion(leaf, index, size, [], root)) is error


def test_error_messages_name_the_values():
    with pytest.raises(S, match=r"index=8 >= size=8"):
        verify_inclusion(X, 8, 8, [], X)
    with pytest.raises(S, match=r"size=0"):
        verify_inclusion(X, 0, 0, [], X)
    with pytest.raises(S, match=r"first=5 > second=3"):
        verify_consistency(5, 3, X, Y, [])
    with pytest.raises(S, match=r"proof has 2 hashes, expected 3 for index=0, size=8"):
        verify_inclusion(X, 0, 8, [X, Y], X)
    with pytest.raises(S, match=r"proof\[1\] has 31 bytes, expected 32"):
        verify_inclusion(X, 0, 4, [X, Y[:-1]], X)


def test_root_mismatch_carries_expected_and_computed():
    case = _incl_vector("leaf5_of_8")
    computed = root_from_inclusion_proof(WRONG_LEAF, case.index, case.size, list(case.proof))
    with pytest.raises(R) as info:
        replace(case, leaf_hash=WRONG_LEAF).verify()
    err = info.value
    assert err.expected == case.root and err.computed == computed != case.root
    assert case.root.hex() in str(err) and computed.hex() in str(err)
    assert isinstance(err, ProofError) and isinstance(err, ValueError)
    assert issubclass(S, ProofError)

    cons = _cons_vector("6_to_8")
    with pytest.raises(R, match="first root") as info:
        replace(cons, first_root=SOME_HASH).verify()
    assert info.value.expected == SOME_HASH and info.value.what == "first root"


def test_type_errors_are_not_coerced():
    with pytest.raises(TypeError, match="entry must be bytes"):
        leaf_hash("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="proof must be a sequence"):
        verify_inclusion(X, 0, 2, Y, X)  # bytes is not a sequence of hashes
    with pytest.raises(TypeError, match="index must be an integer"):
        verify_inclusion(X, True, 2, [Y], X)
    with pytest.raises(TypeError, match="size must be an integer"):
        verify_inclusion(X, 0, 2.0, [Y], X)
    with pytest.raises(TypeError, match="leaf_hash must be bytes"):
        verify_inclusion(X.hex(), 0, 2, [Y], X)
    with pytest.raises(TypeError, match="leaf_hashes must be a sequence"):
        root_from_leaf_hashes(X)


# ---------------------------------------------------------------------------
# Computation: bad requests
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: inclusion_proof(0, 0, []), r"size=0", id="inclusion_size0"),
        pytest.param(lambda: inclusion_proof(3, 3, LEAF_HASHES), r"index=3 >= size=3", id="inclusion_index_eq_size"),
        pytest.param(lambda: inclusion_proof(-1, 3, LEAF_HASHES), r"index=-1 < 0", id="inclusion_negative_index"),
        pytest.param(lambda: inclusion_proof(0, 9, LEAF_HASHES[:8]), r"size=9 > n_leaves=8", id="inclusion_beyond_leaves"),
        pytest.param(lambda: consistency_proof(5, 3, LEAF_HASHES), r"first=5 > second=3", id="consistency_first_gt_second"),
        pytest.param(lambda: consistency_proof(1, 9, LEAF_HASHES[:8]), r"second=9 > n_leaves=8", id="consistency_beyond_leaves"),
        pytest.param(lambda: MerkleLog(LEAF_HASHES[:8]).root(9), r"size=9 > n_leaves=8", id="log_root_beyond_size"),
        pytest.param(lambda: MerkleLog(LEAF_HASHES[:8]).root(-1), r"size=-1 < 0", id="log_root_negative"),
        pytest.param(lambda: MerkleLog(LEAF_HASHES[:8]).inclusion_proof(8, 8), r"index=8 >= size=8", id="log_inclusion_index_eq_size"),
        pytest.param(lambda: MerkleLog(LEAF_HASHES[:8]).consistency_proof(2, 1), r"first=2 > second=1", id="log_consistency_first_gt_second"),
        pytest.param(lambda: MerkleLog().append(b"short"), r"leaf_hash has 5 bytes", id="log_append_short_hash"),
        pytest.param(lambda: root_from_leaf_hashes([X, Y[:-1]]), r"leaf_hashes\[1\] has 31 bytes", id="root_short_hash"),
    ],
)
def test_bad_requests_raise_proof_shape_error(call, match):
    with pytest.raises(S, match=match):
        call()


def test_trivial_proofs_and_inputs_left_alone():
    leaves = LEAF_HASHES[:8]
    snapshot = list(leaves)
    assert consistency_proof(0, 8, leaves) == []
    assert consistency_proof(8, 8, leaves) == []
    assert inclusion_proof(0, 1, leaves) == []
    proof = consistency_proof(4, 8, leaves)  # first a power of two: verifier prepends the root
    kept = list(proof)
    verify_consistency(4, 8, ref_root_at(4), ref_root_at(8), proof)
    assert proof == kept and leaves == snapshot
    log = MerkleLog(leaves)
    with pytest.raises(S):
        log.extend([X, b"bad"])  # all checked before any is added
    assert log.size == 8


# ---------------------------------------------------------------------------
# Large logs: the cached MerkleLog agrees with the plain computation
# (speed is measured in benchmarks, never asserted in a unit test)
# ---------------------------------------------------------------------------
def test_large_log_roots_and_proofs_agree():
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(100_000)]
    root = root_from_leaf_hashes(leaves)
    log = MerkleLog()
    for leaf in leaves:
        log.append(leaf)
    assert log.root() == root == MerkleLog(leaves).root()
    for n in (1, 2, 3, 1000, 65_536, 99_999):
        assert log.root(n) == root_from_leaf_hashes(leaves[:n])
    proof = log.inclusion_proof(12_345, 99_999)
    verify_inclusion(leaves[12_345], 12_345, 99_999, proof, log.root(99_999))
    cproof = log.consistency_proof(777, 99_999)
    verify_consistency(777, 99_999, log.root(777), log.root(99_999), cproof)
