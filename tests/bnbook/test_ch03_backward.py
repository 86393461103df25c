"""Chapter 3's Jacobian of the normalization and the units-first product of the seed notes."""

import numpy as np
import pytest

from bnbook import ch03_backward as ch03
from bnlib import functional as F


def test_closed_form_jacobian_matches_finite_differences_and_is_a_scaled_projection():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=7)
    jac = ch03.xhat_jacobian(x, eps=1e-12)
    np.testing.assert_allclose(jac, ch03.numerical_xhat_jacobian(x, eps=1e-12), atol=1e-7)
    inv_std = 1 / x.std()
    projection = jac / inv_std
    np.testing.assert_allclose(projection @ projection, projection, atol=1e-9)  # idempotent
    eig = np.sort(np.linalg.eigvalsh(jac))
    np.testing.assert_allclose(eig[:2], 0, atol=1e-9)
    np.testing.assert_allclose(eig[2:], inv_std, rtol=1e-9)


def test_jacobian_contracted_with_the_upstream_gradient_is_the_closed_form_backward():
    rng = np.random.default_rng(1)
    x, dy = rng.normal(size=(9, 1)), rng.normal(size=(9, 1))
    _, cache = F.batch_norm_train(x)
    dx, _, _ = F.batch_norm_backward(dy, cache)
    np.testing.assert_allclose(ch03.xhat_jacobian(x[:, 0]).T @ dy[:, 0], dx[:, 0], atol=1e-12)


def test_jacobian_refuses_a_batch_of_one_or_two_dimensional_input():
    with pytest.raises(ValueError, match="shape"):
        ch03.xhat_jacobian(np.ones(1))
    with pytest.raises(ValueError, match="shape"):
        ch03.xhat_jacobian(np.ones((3, 2)))


def test_units_first_product_fails_or_gives_the_wrong_numbers():
    rng = np.random.default_rng(2)
    result, error = ch03.units_first_dgamma(rng.normal(size=(5, 16)), rng.normal(size=(5, 16)))
    assert result is None and "mismatch" in error
    dy, xhat = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    result, error = ch03.units_first_dgamma(dy, xhat)
    assert error is None and result.shape == (4, 4)
    correct = (dy * xhat).sum(axis=1)
    np.testing.assert_allclose(np.diag(dy @ xhat.T), correct)
    assert np.abs(np.diag(result) - correct).max() > 0.1
