"""Column kinds and the smart defaults, on the seed's two examples and beyond."""

from __future__ import annotations

import numpy as np
import pandas as pd

import embproj_panel as ep
from embproj_panel.schema import infer_schema


def test_hello_world_uses_all_five_dimensions():
    schema = ep.datasets.hello_world().schema
    assert schema.default_embedding == ["D1", "D2", "D3", "D4", "D5"]
    assert schema.default_color is None
    assert schema.default_hover_image is None


def test_digits_defaults():
    table = ep.datasets.digits()
    assert len(table) == 1797
    assert table.columns[:2] == ["image", "target"] and len(table.columns) == 66
    schema = table.schema
    assert schema.default_embedding == table.columns[2:]
    assert len(schema.default_embedding) == 64
    assert schema.default_color == "target"
    assert schema.default_hover_image == "image"
    assert schema.columns["target"].kind == "categorical"
    assert schema.columns["target"].n_unique == 10


def test_single_vector_column_is_the_embedding():
    frame = pd.DataFrame({
        "id": np.arange(6),
        "embedding": list(np.random.default_rng(0).normal(size=(6, 4))),
        "score": np.linspace(0, 1, 6),
        "label": list("aabbcc"),
    })
    schema = infer_schema(frame)
    assert schema.default_embedding == ["embedding"]
    assert schema.columns["embedding"].dim == 4
    assert schema.columns["id"].kind == "id"
    assert schema.default_color == "label"
    assert ep.Table(dataframe=frame).schema == schema


def test_numeric_embedding_excludes_labels_and_ids():
    frame = pd.DataFrame({
        "row_id": np.arange(10, 20),
        "x": np.random.default_rng(1).normal(size=10),
        "y": np.random.default_rng(2).normal(size=10),
        "class": [0, 1] * 5,
        "caption": [f"sentence number {i}" for i in range(10)],
    })
    schema = infer_schema(frame)
    assert schema.default_embedding == ["x", "y"]
    assert schema.default_color == "class"
    assert schema.columns["caption"].kind == "categorical"  # 10 distinct among 10: still few


def test_free_text_and_ids():
    n = 200
    frame = pd.DataFrame({"sentence": [f"text {i}" for i in range(n)], "v": np.zeros(n)})
    assert infer_schema(frame).columns["sentence"].kind == "id"
    frame["sentence"] = [f"text {i % 120}" for i in range(n)]
    assert infer_schema(frame).columns["sentence"].kind == "text"


def test_label_preference_and_single_value_columns_are_not_colors():
    frame = pd.DataFrame({"const": ["a"] * 4, "group": ["x", "y", "x", "z"], "v": [1.0, 2, 3, 4]})
    assert infer_schema(frame).default_color == "group"
    frame = pd.DataFrame({"const": ["a"] * 4, "v": [1.0, 2, 3, 4]})
    assert infer_schema(frame).default_color is None


def test_mixed_columns_are_classified_leniently():
    frame = pd.DataFrame({"n": ["1.5", 2.0, "3"], "t": ["a", 1, None]})
    schema = infer_schema(frame)
    assert schema.columns["n"].kind == "numeric"
    assert schema.columns["t"].kind == "text"
