"""Shared test set-up: Keras on the torch backend, one hypothesis profile, a seeded generator."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# One profile for the whole suite: enough examples to find shape and convention bugs, no deadline
# (the first torch call in a process is slow), and a fixed derandomized run in CI so a red run
# can be reproduced exactly.
settings.register_profile(
    "bnbook",
    max_examples=40,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("bnbook")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
