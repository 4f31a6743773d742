"""CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as common/crc32c.cpp computes it.

``crc32c(data, crc)`` continues a previous result exactly as the C++ ``crc32c(p, n, crc)`` does
(pre- and post-inversion included), so ``crc32c(b, crc32c(a)) == crc32c(a + b)``.

Backends, fastest first:
  * ``crcmod``: Debian's ``python3-crcmod`` (C extension, ~200 MB/s);
  * ``numpy``: pure NumPy. The message is cut into blocks of 16 bytes whose CRCs are computed in
    parallel (one vectorised table step per byte column), then combined pairwise in a tree with
    "shift by k zero bytes" operators (CRC is linear over GF(2)), so the Python-level work is
    16 + log2(blocks) NumPy operations per call instead of one per byte.
``BACKEND`` names the one in use; ``crc32c_numpy`` is always available (tests compare the two).
"""
import numpy as np

_POLY = 0x82F63B78
_MASK = 0xFFFFFFFF


def _byte_table():
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    return t


_T0 = _byte_table()
_T0_LIST = _T0.tolist()
_BLOCK = 16


def _apply(tables, x):
    """The linear operator given by ``tables`` (4 × 256 uint32, one per input byte) applied to x."""
    return (tables[0][x & 0xFF] ^ tables[1][(x >> 8) & 0xFF] ^ tables[2][(x >> 16) & 0xFF]
            ^ tables[3][x >> 24])


def _shift_tables_for_block():
    """Tables of the operator 'feed _BLOCK zero bytes' (raw CRC update, no inversions)."""
    basis = np.array([v << (8 * b) for b in range(4) for v in range(256)], dtype=np.uint32)
    c = basis
    for _ in range(_BLOCK):
        c = (c >> 8) ^ _T0[c & 0xFF]
    return c.reshape(4, 256)


_SHIFTS = [_shift_tables_for_block()]  # _SHIFTS[k]: feed _BLOCK * 2**k zero bytes


def _shift_level(k):
    while len(_SHIFTS) <= k:
        s = _SHIFTS[-1]
        _SHIFTS.append(_apply(s, s))  # composing the operator with itself doubles the shift
    return _SHIFTS[k]


def _crc_small(b, state):
    t = _T0_LIST
    for byte in b:
        state = (state >> 8) ^ t[(state ^ byte) & 0xFF]
    return state


def crc32c_numpy(data, crc=0):
    """CRC-32C of ``data`` (bytes-like), continuing ``crc``; pure NumPy."""
    b = np.frombuffer(data, dtype=np.uint8)
    n = b.size
    state = (~crc) & _MASK
    if n < 4 * _BLOCK:
        return (~_crc_small(b.tolist(), state)) & _MASK
    # A starting state s over message D equals state 0 over D with s XORed into its first four
    # bytes; leading zero bytes leave state 0 unchanged, so the message is padded at the front to
    # a power-of-two number of blocks.
    blocks = -(-n // _BLOCK)
    blocks2 = 1 << (blocks - 1).bit_length()
    total = blocks2 * _BLOCK
    buf = np.zeros(total, dtype=np.uint8)
    start = total - n
    buf[start:] = b
    buf[start:start + 4] ^= np.frombuffer(state.to_bytes(4, "little"), dtype=np.uint8)
    cols = buf.reshape(blocks2, _BLOCK)
    c = np.zeros(blocks2, dtype=np.uint32)
    for j in range(_BLOCK):
        c = (c >> 8) ^ _T0[(c ^ cols[:, j]) & 0xFF]
    level = 0
    while c.size > 1:  # crc(A ‖ B) = shift_|B|(crc(A)) ^ crc(B), pairwise
        c = _apply(_shift_level(level), c[0::2]) ^ c[1::2]
        level += 1
    return (~int(c[0])) & _MASK


try:
    import crcmod.predefined as _crcmod_predefined

    _crcmod_fun = _crcmod_predefined.mkCrcFun("crc-32c")
    if _crcmod_fun(b"123456789") != 0xE3069283:  # the standard check value
        raise ImportError("crcmod's crc-32c does not give the check value")

    def crc32c(data, crc=0):
        """CRC-32C of ``data`` (bytes-like, memoryview included), continuing ``crc``."""
        return _crcmod_fun(data, crc)

    BACKEND = "crcmod"
except ImportError:  # pragma: no cover - depends on the installed packages
    crc32c = crc32c_numpy
    BACKEND = "numpy"
