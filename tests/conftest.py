import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
