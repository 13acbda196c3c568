import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sparsetorch.checkpoint.bits import pack_uint, packed_nbytes, unpack_uint


def test_two_bit_golden_little_endian():
    # 1, 2, 3, 0 -> 0b00_11_10_01 ; then 3 alone -> 0b11
    packed = pack_uint(np.array([1, 2, 3, 0, 3], dtype=np.uint8), 2)
    assert packed.tolist() == [0b00111001, 0b11]


@given(st.integers(1, 8), st.lists(st.integers(0, 255), max_size=300))
def test_pack_round_trip(k, raw):
    values = np.array(raw, dtype=np.uint8) & ((1 << k) - 1)
    packed = pack_uint(values, k)
    assert len(packed) == packed_nbytes(len(values), k)
    assert np.array_equal(unpack_uint(packed, len(values), k), values)
