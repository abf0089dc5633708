"""RFC 6962 / RFC 9162 Merkle tree for the audit log: bytes in, bytes out.

Pure Python over :mod:`hashlib`; no database, no I/O. The audit log stores
leaf hashes and checkpoints ``(size, root)``; this module computes roots and
proofs from those leaf hashes and verifies proofs without them.

Hashing (RFC 9162 section 2.1.1)::

    leaf_hash(entry)        = SHA-256(0x00 || entry)
    node_hash(left, right)  = SHA-256(0x01 || left || right)
    MTH({})                 = SHA-256("")                      (EMPTY_ROOT)
    MTH(D[n]), n > 1        = node_hash(MTH(D[0:k]), MTH(D[k:n])),
                              k the largest power of two smaller than n

Computation (:func:`root_from_leaf_hashes`, :func:`inclusion_proof`,
:func:`consistency_proof` and the incremental :class:`MerkleLog`) is kept
apart from verification (:func:`verify_inclusion`,
:func:`verify_consistency`, which implement RFC 9162 sections 2.1.3.2 and
2.1.4.2 and need only hashes). Verification rejects impossible requests
first (:class:`ProofShapeError`) and then compares roots
(:class:`RootMismatchError`, carrying the expected and computed hashes).

Conventions follow transparency-dev/merkle: a consistency proof between equal
sizes is empty and valid only if the two roots are equal; from size 0 it is
empty and valid for any second root (we additionally require the size-0 root
to be :data:`EMPTY_ROOT`); an inclusion proof in a tree of size 0 never
verifies.

What a proof does not bind: an inclusion or consistency proof is checked
against a root, and the same hashes can be a well-formed proof for a
neighbouring size (e.g. leaf 1 of a 5-leaf tree "verifies" with ``size=6``
against the 5-leaf root). The size is bound to the root by the signed
checkpoint, so always take ``size`` and ``root`` from the same checkpoint.
"""
from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleLog",
    "ProofError",
    "ProofShapeError",
    "RootMismatchError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 digest, hence in every leaf, node, root and proof hash."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the empty tree, MTH({}) = SHA-256 of the empty string (RFC 9162 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


# --------------------------------------------------------------------- errors
class ProofError(ValueError):
    """Base class: a proof, a proof request or a tree size is not acceptable."""


class ProofShapeError(ProofError):
    """The request or proof is impossible before any hashing.

    Raised for negative or out-of-range indices and sizes (``index >= size``,
    ``first > second``, size 0, a size beyond the leaves held), hashes that
    are not :data:`HASH_SIZE` bytes, and proofs of the wrong length.
    """


class RootMismatchError(ProofError):
    """The root recomputed from a proof differs from the one expected.

    Attributes
    ----------
    expected : bytes
        The root the caller trusts (from a checkpoint).
    computed : bytes
        The root the proof leads to.
    what : str
        Which root failed, e.g. ``"root"``, ``"first root"``, ``"second root"``.
    """

    def __init__(self, expected: bytes, computed: bytes, *, what: str = "root") -> None:
        self.expected = bytes(expected)
        self.computed = bytes(computed)
        self.what = what
        super().__init__(
            f"{what} mismatch: expected {self.expected.hex()}, computed {self.computed.hex()}"
        )


# ------------------------------------------------------------- input checking
def _check_int(name: str, value: object) -> int:
    """Return ``value`` as an ``int``; bools and non-integers are a TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _check_hash(name: str, value: object) -> bytes:
    """Return ``value`` as bytes if it is a :data:`HASH_SIZE`-byte hash."""
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofShapeError(f"{name} has {len(value)} bytes, expected {HASH_SIZE}")
    return bytes(value)


def _check_proof(proof: object) -> list[bytes]:
    """Return ``proof`` as a list of checked hashes (it must be a sequence of them)."""
    if isinstance(proof, (bytes, bytearray, str)) or not isinstance(proof, Sequence):
        raise TypeError(f"proof must be a sequence of hashes, got {type(proof).__name__}")
    return [_check_hash(f"proof[{i}]", h) for i, h in enumerate(proof)]


def _check_sequence(leaf_hashes: object) -> Sequence[bytes]:
    if isinstance(leaf_hashes, (bytes, bytearray, str)) or not isinstance(leaf_hashes, Sequence):
        raise TypeError(
            f"leaf_hashes must be a sequence of hashes, got {type(leaf_hashes).__name__}"
        )
    return leaf_hashes


def _check_leaf_hashes(leaf_hashes: object) -> list[bytes]:
    if isinstance(leaf_hashes, (bytes, bytearray, str)) or not isinstance(leaf_hashes, Iterable):
        raise TypeError(
            f"leaf_hashes must be a sequence of hashes, got {type(leaf_hashes).__name__}"
        )
    return [_check_hash(f"leaf_hashes[{i}]", h) for i, h in enumerate(leaf_hashes)]


# -------------------------------------------------------------------- hashing
def leaf_hash(entry: bytes) -> bytes:
    """Hash one log entry as a leaf: SHA-256(0x00 || entry) (RFC 9162 2.1.1).

    Parameters
    ----------
    entry : bytes
        The serialised log entry (``bytes``, ``bytearray`` or ``memoryview``).

    Returns
    -------
    bytes
        32-byte leaf hash.

    Raises
    ------
    TypeError
        If ``entry`` is not bytes-like (a ``str`` is not encoded silently).
    """
    if not isinstance(entry, (bytes, bytearray, memoryview)):
        raise TypeError(f"entry must be bytes, got {type(entry).__name__}")
    return _sha256(_LEAF_PREFIX + bytes(entry)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes: SHA-256(0x01 || left || right) (RFC 9162 2.1.1).

    Raises
    ------
    TypeError, ProofShapeError
        If either child is not a :data:`HASH_SIZE`-byte hash.
    """
    return _node(_check_hash("left", left), _check_hash("right", right))


def _node(left: bytes, right: bytes) -> bytes:
    """:func:`node_hash` without checks (internal, inputs already valid)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


# ---------------------------------------------------------------- computation
def _build_levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    """Hashes of all aligned perfect subtrees, level by level.

    ``levels[k][j]`` is the hash of leaves ``j * 2**k .. (j + 1) * 2**k - 1``;
    ``len(levels[k + 1]) == len(levels[k]) // 2``. O(n) hashes.
    """
    levels = [leaf_hashes]
    while len(levels[-1]) >= 2:
        below = levels[-1]
        levels.append([_node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def _range_hash(levels: list[list[bytes]], lo: int, hi: int) -> bytes:
    """MTH of leaves ``lo .. hi - 1`` for a range met in RFC 6962's recursion.

    Such ranges start at a multiple of their largest perfect subtree, so the
    range is the aligned perfect subtrees given by the binary digits of
    ``hi - lo``, highest first, chained right to left. O(log n).
    """
    n = hi - lo
    parts = []
    pos = lo
    for level in range(n.bit_length() - 1, -1, -1):
        if (n >> level) & 1:
            parts.append(levels[level][pos >> level])
            pos += 1 << level
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = _node(part, acc)
    return acc


def _largest_power_of_two_below(n: int) -> int:
    """Largest k = 2**i with k < n, for n > 1 (RFC 6962 2.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_path(levels: list[list[bytes]], index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) (RFC 6962 2.1.1), leaf-to-root order. Valid input."""
    top_down = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            top_down.append(_range_hash(levels, lo + k, hi))
            hi = lo + k
        else:
            top_down.append(_range_hash(levels, lo, lo + k))
            lo += k
    top_down.reverse()
    return top_down


def _consistency_path(levels: list[list[bytes]], first: int, second: int) -> list[bytes]:
    """PROOF(first, D[second]) (RFC 6962 2.1.2) for 0 < first < second. Valid input."""
    top_down = []
    lo, hi, m, whole_subtree = 0, second, first, True
    while True:
        n = hi - lo
        if m == n:
            if not whole_subtree:
                top_down.append(_range_hash(levels, lo, hi))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:
            top_down.append(_range_hash(levels, lo + k, hi))
            hi = lo + k
        else:
            top_down.append(_range_hash(levels, lo, lo + k))
            lo += k
            m -= k
            whole_subtree = False
    top_down.reverse()
    return top_down


def _check_size(size: object, n_leaves: int, *, name: str = "size") -> int:
    size = _check_int(name, size)
    if size < 0:
        raise ProofShapeError(f"{name}={size} < 0")
    if size > n_leaves:
        raise ProofShapeError(f"{name}={size} > {n_leaves=}")
    return size


def _check_inclusion_request(index: object, size: object, n_leaves: int) -> tuple[int, int]:
    index = _check_int("index", index)
    size = _check_size(size, n_leaves)
    if size == 0:
        raise ProofShapeError(f"{size=}: the empty tree has no leaves")
    if index < 0:
        raise ProofShapeError(f"{index=} < 0")
    if index >= size:
        raise ProofShapeError(f"{index=} >= {size=}")
    return index, size


def _check_consistency_request(first: object, second: object, n_leaves: int) -> tuple[int, int]:
    first = _check_int("first", first)
    second = _check_size(second, n_leaves, name="second")
    if first < 0:
        raise ProofShapeError(f"{first=} < 0")
    if first > second:
        raise ProofShapeError(f"{first=} > {second=}")
    return first, second


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash MTH of all the given leaves (RFC 6962 2.1).

    Iterative, O(n) hashes: pairs neighbours level by level, carrying an odd
    last node up unchanged, which is the same tree as RFC 6962's split at the
    largest power of two smaller than n.

    Parameters
    ----------
    leaf_hashes : sequence of bytes
        Leaf hashes (see :func:`leaf_hash`), 32 bytes each, in log order.

    Returns
    -------
    bytes
        The 32-byte root; :data:`EMPTY_ROOT` for no leaves.

    Raises
    ------
    TypeError, ProofShapeError
        If an element is not a 32-byte hash.
    """
    level = _check_leaf_hashes(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Audit path PATH(index, D[size]) of one leaf (RFC 6962 2.1.1).

    Parameters
    ----------
    index : int
        Zero-based leaf index, ``0 <= index < size``.
    size : int
        Tree size; the tree is the first ``size`` of ``leaf_hashes``.
    leaf_hashes : sequence of bytes
        At least ``size`` leaf hashes in log order.

    Returns
    -------
    list of bytes
        Sibling hashes from the leaf upwards (empty for ``size == 1``).

    Raises
    ------
    ProofShapeError
        If ``size == 0``, ``index`` is out of ``[0, size)`` or ``size`` exceeds
        the leaves given.
    """
    index, size = _check_inclusion_request(index, size, len(_check_sequence(leaf_hashes)))
    leaves = _check_leaf_hashes(leaf_hashes[:size])
    return _inclusion_path(_build_levels(leaves), index, size)


def consistency_proof(first: int, second: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Consistency proof PROOF(first, D[second]) (RFC 6962 2.1.2).

    Parameters
    ----------
    first, second : int
        Tree sizes, ``0 <= first <= second``.
    leaf_hashes : sequence of bytes
        At least ``second`` leaf hashes in log order.

    Returns
    -------
    list of bytes
        The proof; empty when ``first == 0`` or ``first == second``
        (transparency-dev/merkle convention).

    Raises
    ------
    ProofShapeError
        If ``first > second``, a size is negative or ``second`` exceeds the
        leaves given.
    """
    first, second = _check_consistency_request(first, second, len(_check_sequence(leaf_hashes)))
    leaves = _check_leaf_hashes(leaf_hashes[:second])
    if first == 0 or first == second:
        return []
    return _consistency_path(_build_levels(leaves), first, second)


class MerkleLog:
    """Append-only Merkle tree over leaf hashes, with cached subtree hashes.

    Holds every leaf hash plus the hash of every complete aligned perfect
    subtree (about 2n hashes in all), updated in amortised O(1) per
    :meth:`append`. Then :meth:`root` of any earlier size is O(log n) and each
    proof O(log^2 n), so the audit log can load its stored leaf hashes once
    and answer checkpoint and proof requests without rehashing the log.

    Parameters
    ----------
    leaf_hashes : iterable of bytes, optional
        Initial leaf hashes in log order (built in O(n)).

    Examples
    --------
    >>> log = MerkleLog()
    >>> log.root() == EMPTY_ROOT
    True
    >>> log.append(leaf_hash(b"entry 0"))
    0
    >>> log.root() == leaf_hash(b"entry 0")
    True
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels = _build_levels(_check_leaf_hashes(leaf_hashes))

    def __len__(self) -> int:
        return len(self._levels[0])

    def __repr__(self) -> str:
        return f"MerkleLog(size={len(self)})"

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def leaf_hash(self, index: int) -> bytes:
        """The stored hash of leaf ``index`` (``0 <= index < size``)."""
        index, _ = _check_inclusion_request(index, self.size, self.size)
        return self._levels[0][index]

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; return its index.

        Raises
        ------
        TypeError, ProofShapeError
            If ``leaf_hash`` is not a 32-byte hash.
        """
        levels = self._levels
        levels[0].append(_check_hash("leaf_hash", leaf_hash))
        level = 0
        while len(levels[level]) % 2 == 0:
            below = levels[level]
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(_node(below[-2], below[-1]))
            level += 1
        return len(levels[0]) - 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes (all are checked before any is added)."""
        for h in _check_leaf_hashes(leaf_hashes):
            self.append(h)

    def root(self, size: int | None = None) -> bytes:
        """Root of the first ``size`` leaves (default: all); O(log n).

        Raises
        ------
        ProofShapeError
            If ``size`` is negative or larger than :attr:`size`.
        """
        size = self.size if size is None else _check_size(size, self.size)
        if size == 0:
            return EMPTY_ROOT
        return _range_hash(self._levels, 0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) (RFC 6962 2.1.1); see :func:`inclusion_proof`."""
        index, size = _check_inclusion_request(index, size, self.size)
        return _inclusion_path(self._levels, index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[second]) (RFC 6962 2.1.2); see :func:`consistency_proof`."""
        first, second = _check_consistency_request(first, second, self.size)
        if first == 0 or first == second:
            return []
        return _consistency_path(self._levels, first, second)


# --------------------------------------------------------------- verification
def _inclusion_proof_length(index: int, size: int) -> int:
    """Length of PATH(index, D[size]) for 0 <= index < size, without hashing.

    Below the level where the paths to ``index`` and ``size - 1`` meet, every
    level contributes a sibling; above it, only the levels where ``index``
    has a left neighbour (a set bit) do.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_length(first: int, second: int) -> int:
    """Length of PROOF(first, D[second]) for 0 < first < second, without hashing."""
    shift = (first & -first).bit_length() - 1  # trailing zero bits of first
    inner = ((first - 1) ^ (second - 1)).bit_length() - shift
    border = ((first - 1) >> (inner + shift)).bit_count()
    is_power_of_two = first & (first - 1) == 0
    return inner + border + (0 if is_power_of_two else 1)


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root that ``proof`` leads to from ``leaf_hash`` at ``index`` (RFC 9162 2.1.3.2).

    Parameters
    ----------
    leaf_hash : bytes
        32-byte hash of the leaf (see :func:`leaf_hash`).
    index, size : int
        Leaf index and tree size, ``0 <= index < size``.
    proof : sequence of bytes
        The audit path, leaf to root.

    Returns
    -------
    bytes
        The recomputed 32-byte root.

    Raises
    ------
    ProofShapeError
        If ``size == 0``, ``index`` is outside ``[0, size)``, a hash is not 32
        bytes or ``proof`` has the wrong length for ``(index, size)``.
    TypeError
        If an argument has the wrong type.
    """
    index = _check_int("index", index)
    size = _check_int("size", size)
    if size <= 0:
        raise ProofShapeError(f"{size=}: the empty tree has no leaves" if size == 0 else f"{size=} < 0")
    if index < 0:
        raise ProofShapeError(f"{index=} < 0")
    if index >= size:
        raise ProofShapeError(f"{index=} >= {size=}")
    r = _check_hash("leaf_hash", leaf_hash)
    path = _check_proof(proof)
    want = _inclusion_proof_length(index, size)
    if len(path) != want:
        raise ProofShapeError(f"proof has {len(path)} hashes, expected {want} for {index=}, {size=}")

    # RFC 9162 2.1.3.2, steps 2-5.
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:  # unreachable after the length check; kept from the RFC
            raise ProofShapeError(f"proof too long for {index=}, {size=}")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable after the length check; kept from the RFC
        raise ProofShapeError(f"proof too short for {index=}, {size=}")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)``.

    RFC 9162 section 2.1.3.2. Returns nothing on success.

    Parameters
    ----------
    leaf_hash : bytes
        32-byte leaf hash.
    index, size : int
        Leaf index and tree size from the same checkpoint as ``root``.
    proof : sequence of bytes
        Audit path from :func:`inclusion_proof` or :meth:`MerkleLog.inclusion_proof`.
    root : bytes
        Trusted 32-byte root for ``size``.

    Raises
    ------
    ProofShapeError
        ``size == 0``, ``index >= size``, negative values, hashes not 32
        bytes, or a proof of the wrong length (checked before hashing).
    RootMismatchError
        The proof leads to another root (``expected=root``).
    """
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    expected = _check_hash("root", root)
    if computed != expected:
        raise RootMismatchError(expected, computed, what="root")


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree ``(second, second_root)`` extends ``(first, first_root)``.

    RFC 9162 section 2.1.4.2, with transparency-dev/merkle's conventions:
    ``first == second`` needs an empty proof and equal roots; ``first == 0``
    needs an empty proof and ``first_root == EMPTY_ROOT``, any second root.
    Returns nothing on success.

    Parameters
    ----------
    first, second : int
        Earlier and later tree sizes, ``0 <= first <= second``.
    first_root, second_root : bytes
        Trusted 32-byte roots of those sizes.
    proof : sequence of bytes
        From :func:`consistency_proof` or :meth:`MerkleLog.consistency_proof`.

    Raises
    ------
    ProofShapeError
        ``first > second``, negative sizes, hashes not 32 bytes, a non-empty
        proof where it must be empty, an empty one where it must not, or the
        wrong length (checked before hashing).
    RootMismatchError
        Either root differs from the one the proof leads to (``what`` says which).
    """
    first = _check_int("first", first)
    second = _check_int("second", second)
    if first < 0:
        raise ProofShapeError(f"{first=} < 0")
    if first > second:
        raise ProofShapeError(f"{first=} > {second=}")
    first_root = _check_hash("first_root", first_root)
    second_root = _check_hash("second_root", second_root)
    path = _check_proof(proof)

    if first == second:
        if path:
            raise ProofShapeError(f"{first=} == {second=} needs an empty proof, got {len(path)} hashes")
        if first_root != second_root:
            raise RootMismatchError(first_root, second_root, what=f"second root (equal sizes {first})")
        if first == 0 and first_root != EMPTY_ROOT:
            raise RootMismatchError(EMPTY_ROOT, first_root, what="first root (size 0)")
        return
    if first == 0:
        if path:
            raise ProofShapeError(f"{first=} needs an empty proof, got {len(path)} hashes")
        if first_root != EMPTY_ROOT:
            raise RootMismatchError(EMPTY_ROOT, first_root, what="first root (size 0)")
        return
    want = _consistency_proof_length(first, second)
    if len(path) != want:
        raise ProofShapeError(f"proof has {len(path)} hashes, expected {want} for {first=}, {second=}")

    # RFC 9162 2.1.4.2, steps 2-7.
    if first & (first - 1) == 0:  # first is an exact power of two
        path = [first_root, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # unreachable after the length check; kept from the RFC
            raise ProofShapeError(f"proof too long for {first=}, {second=}")
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable after the length check; kept from the RFC
        raise ProofShapeError(f"proof too short for {first=}, {second=}")
    if fr != first_root:
        raise RootMismatchError(first_root, fr, what="first root")
    if sr != second_root:
        raise RootMismatchError(second_root, sr, what="second root")
