"""Sample tables that ship with the package: no download, ever.

``digits()`` is the seed example of W&B's Embedding Projector docs, built from the copy of the
UCI handwritten digits that scikit-learn bundles: a ``"target"`` label, an ``"image"`` and the
64 pixel columns. ``hello_world()`` is the seed's three 5-d embeddings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from embproj_panel.images import Image
from embproj_panel.table import Table


def digits() -> Table:
    """The seed's digits table: 1,797 rows, ``"image"``, ``"target"`` and 64 pixel columns.

    Built exactly as the seed builds it (``target`` as strings, each image the 8x8 pixels
    divided by 16), with the column order the seed ends with: image, target, pixels.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits(as_frame=True)
    frame: pd.DataFrame = bunch.data
    pixels = frame.to_numpy(dtype=np.float64)
    images = np.empty(len(frame), dtype=object)
    images[:] = [Image(row.reshape(8, 8) / 16.0) for row in pixels]
    out = pd.concat(
        [
            pd.DataFrame({"image": images, "target": bunch.target.astype(str).to_numpy(dtype=object)}),
            frame.reset_index(drop=True),
        ],
        axis=1,
    )
    return Table(dataframe=out)


def hello_world() -> Table:
    """The seed's "hello world": three embeddings of five dimensions, columns D1..D5."""
    embeddings = [
        [0.2, 0.4, 0.1, 0.7, 0.5],
        [0.3, 0.1, 0.9, 0.2, 0.7],
        [0.4, 0.5, 0.2, 0.2, 0.1],
    ]
    return Table(columns=["D1", "D2", "D3", "D4", "D5"], data=embeddings)
