"""Procrustes alignment (embproj_panel.align): pure functions on seeded layouts."""

from __future__ import annotations

import numpy as np
import pytest

from embproj_panel.align import Alignment, align_layout, procrustes_fit, shared_rows


def _layout(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) * [3.0, 1.0] + [5.0, -2.0]


def _rotation(theta: float, reflect: bool = False) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    return rotation @ np.diag([1.0, -1.0]) if reflect else rotation


@pytest.mark.parametrize("reflect", [False, True])
def test_a_rotated_reflected_scaled_shifted_copy_aligns_back(reflect):
    reference = _layout()
    moved = 0.37 * reference @ _rotation(1.1, reflect) + [40.0, -7.5]
    rows = np.arange(len(reference))
    aligned, fit = align_layout(moved, rows, reference, rows)
    np.testing.assert_allclose(aligned, reference, atol=1e-9)
    assert fit.reflected is reflect
    assert fit.scale == pytest.approx(1 / 0.37)
    assert fit.rmsd < 1e-9 and fit.n_shared == len(reference)


def test_rotation_is_orthogonal_and_the_reference_is_not_rescaled():
    reference = _layout(seed=1)
    noisy = reference @ _rotation(0.3) + np.random.default_rng(2).normal(0, 0.05, reference.shape)
    fit = procrustes_fit(noisy, reference)
    np.testing.assert_allclose(fit.rotation.T @ fit.rotation, np.eye(2), atol=1e-12)
    # Unlike scipy.spatial.procrustes, the reference keeps its own scale and place.
    aligned = fit.apply(noisy)
    assert abs(aligned.std() - reference.std()) < 0.05
    np.testing.assert_allclose(aligned.mean(axis=0), reference.mean(axis=0), atol=1e-9)
    assert 0 < fit.rmsd < 0.1


def test_rows_missing_from_either_side_are_fitted_on_the_shared_rows_and_all_moved():
    reference = _layout(300, seed=3)
    transform = Alignment(_rotation(2.0, True), 4.0, np.array([1.0, 2.0]), 0, 0.0)
    moved_all = transform.apply(reference)
    # The layout lacks rows 0-49 and has them shuffled; the reference lacks rows 250-299.
    rows = np.random.default_rng(4).permutation(np.arange(50, 300))
    reference_rows = np.arange(250)
    aligned, fit = align_layout(moved_all[rows].astype(np.float32), rows,
                                reference[reference_rows], reference_rows)
    assert fit.n_shared == 200
    assert aligned.dtype == np.float32
    # Every row of the layout is moved, also those the reference does not have.
    np.testing.assert_allclose(aligned, reference[rows], atol=1e-4)


def test_shared_rows_pairs_positions_by_row_id():
    positions, reference_positions = shared_rows(np.array([7, 3, 5]), np.array([5, 9, 7]))
    assert positions.tolist() == [2, 0] and reference_positions.tolist() == [0, 2]


def test_non_finite_rows_are_left_out_of_the_fit():
    reference = _layout(50, seed=5)
    moved = reference @ _rotation(0.5) * 2
    moved[3] = np.nan
    fit = procrustes_fit(moved, reference)
    assert fit.n_shared == 49
    np.testing.assert_allclose(fit.apply(moved)[4:], reference[4:], atol=1e-9)


@pytest.mark.parametrize(("source", "target", "message"), [
    (np.zeros((1, 2)), np.zeros((1, 2)), "at least 2 rows"),
    (np.ones((5, 2)), _layout(5), "coincide"),
    (np.zeros((5, 3)), np.zeros((5, 3)), r"\(n, 2\)"),
    (np.zeros((5, 2)), np.zeros((4, 2)), "same rows"),
])
def test_bad_inputs_say_what_is_wrong(source, target, message):
    with pytest.raises(ValueError, match=message):
        procrustes_fit(source, target)


def test_no_shared_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 rows present in both"):
        align_layout(_layout(10), np.arange(10), _layout(10), np.arange(10, 20))
