"""Hypothesis strategies shared by the tests: shapes, feature axes, momenta, seeds."""

import math

from hypothesis import strategies as st

# momentum values that exercise every branch: the PyTorch default, the Keras-equivalent 0.01,
# arbitrary values, the cumulative average (None) and the two ends of [0, 1]
momenta = st.one_of(
    st.sampled_from([0.1, 0.01, 0.0, 1.0, None]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)

seeds = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def torch_layouts(draw, max_side=5):
    """A channels-first shape (N, C, *spatial) with 0-3 spatial dims and > 1 value per channel."""
    spatial = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 3)))]
    n = draw(st.integers(1, max_side))
    if n * math.prod(spatial) < 2:
        n = 2
    return (n, draw(st.integers(1, 6)), *spatial)


@st.composite
def bn_layouts(draw):
    """``(shape, axis)``: a torch layout as it is (axis=1) or with the channels moved last (axis=-1)."""
    shape = draw(torch_layouts())
    if draw(st.booleans()):
        return shape, 1
    return (shape[0], *shape[2:], shape[1]), -1
