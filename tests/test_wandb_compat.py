"""Differential tests: the same calls on ``wandb.Table`` (offline) and on ours agree."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
wandb = pytest.importorskip("wandb")  # in the "test" extra; CI always has it

import embproj_panel as ep  # noqa: E402


def both(build):
    """Run the same construction on wandb and on ours; return both results (or both errors)."""
    results = []
    for module in (wandb, ep):
        try:
            results.append(build(module))
        except Exception as exc:  # noqa: BLE001 - the differential compares error kinds
            results.append(exc)
    return results


def plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@pytest.mark.parametrize(
    "build",
    [
        lambda m: m.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]]),
        lambda m: m.Table(data=[[1, 2, 3]]),
        lambda m: m.Table(data=np.arange(6.0).reshape(2, 3)),
        lambda m: m.Table(columns=["a"], data=[[1], [2.5]]),
        lambda m: m.Table(columns=["a", "b"], data=[[1, None], [None, "s"]]),
    ],
)
def test_same_columns_and_rows(build):
    theirs, ours = both(build)
    assert theirs.columns == ours.columns
    assert plain([row for _, row in theirs.iterrows()]) == plain([row for _, row in ours.iterrows()])
    for name in theirs.columns:
        assert plain(theirs.get_column(name)) == plain(ours.get_column(name))


@pytest.mark.parametrize(
    "build",
    [
        lambda m: m.Table(columns=["a"], data=[[1], ["x"]]),  # mixed number/str
        lambda m: m.Table(columns=["a"], data=[[True], [1]]),  # bool then number
        lambda m: m.Table(columns=["a", "b"], data=[[1, 2, 3]]),  # row too long
    ],
)
def test_same_refusals(build):
    theirs, ours = both(build)
    assert isinstance(theirs, Exception), "wandb accepted it"
    assert isinstance(ours, (TypeError, ValueError))
    assert isinstance(ours, type(theirs)) or isinstance(theirs, AssertionError)


def test_add_data_refusal_matches():
    for module in (wandb, ep):
        table = module.Table(columns=["a", "b"], data=[[1, "x"]])
        with pytest.raises(TypeError):
            table.add_data("y", "z")
        assert len(table.data) == 1


def test_add_computed_columns_positional_order_matches():
    def compute(ndx, row):
        return {"c": ndx * 10 + row["a"]}

    results = []
    for module in (wandb, ep):
        table = module.Table(columns=["a", "b"], data=[[1, 2], [3, 4]])
        table.add_computed_columns(compute)
        results.append((table.columns, plain(table.get_column("c"))))
    assert results[0] == results[1] == (["a", "b", "c"], [1, 13])


def test_vector_column_numpy_matches():
    results = []
    for module in (wandb, ep):
        table = module.Table(columns=["a"], data=[[1], [2]])
        table.add_column("v", [[1.0, 2.0], [3.0, 4.0]])
        results.append(np.asarray(table.get_column("v", convert_to="numpy"), dtype=float))
    np.testing.assert_array_equal(*results)


def test_image_from_uint8_matches_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    theirs = np.asarray(wandb.Image(pixels).image)
    np.testing.assert_array_equal(ep.Image(pixels).to_numpy(), theirs)
