"""Anything the projector accepts -> a :class:`~embproj_panel.table.Table`.

:func:`as_table` is what ``Projector(source)`` and ``ProjectorState`` users call; no Panel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from embproj_panel.dataset import Dataset
from embproj_panel.dataset_table import DatasetTable
from embproj_panel.table import Table
from embproj_panel.wandb_live import is_wandb_table

__all__ = ["as_table"]


def as_table(source: Any) -> Table | None:
    """Turn what ``Projector`` accepts into a :class:`~embproj_panel.table.Table`.

    Parameters
    ----------
    source
        A Table; a ``wandb.Table``; a pandas DataFrame; a 2-D numeric ndarray (one vector column
        ``"embedding"``); a logged table as ``(project, run, key)`` or
        ``(project, run, key, step)``; a :class:`~embproj_panel.dataset.Dataset` (kept on
        disk: a :class:`~embproj_panel.dataset_table.DatasetTable`); or None.

    Raises
    ------
    TypeError
        For anything else.
    """
    if source is None or isinstance(source, Table):
        return source
    if is_wandb_table(source):
        return Table.from_wandb(source)
    if isinstance(source, Dataset):  # lazy: the app holds what it draws, reads rows on demand
        return DatasetTable(source)
    if isinstance(source, pd.DataFrame):
        return Table(dataframe=source)
    if isinstance(source, np.ndarray):
        if source.ndim != 2 or not np.issubdtype(source.dtype, np.number):
            raise TypeError(
                f"An ndarray source must be a 2-D numeric array (rows x dimensions); got "
                f"shape {source.shape} of {source.dtype}"
            )
        cells = np.empty(len(source), dtype=object)
        cells[:] = list(source)
        return Table(dataframe=pd.DataFrame({"embedding": cells}))
    if isinstance(source, tuple) and len(source) in (3, 4) and all(
        isinstance(part, str) for part in source[:3]
    ):
        from embproj_panel.store import load_table

        project, run, key, *step = source
        return as_table(load_table(project, run, key, *step))  # a Dataset (>= 1M rows): lazy
    raise TypeError(
        "source must be a Table, a DataFrame, a 2-D ndarray, a Dataset or a logged table "
        f"(project, run, key); got {type(source).__name__}"
    )


def load_source(source: tuple[str, ...] | None) -> tuple[Table, list[str]]:
    """The table a page names and the notes on what could not be kept (W&B files have some).

    ``source`` is None (the digits sample), ``("wandb", name)`` (a W&B table by its listing
    name, never a path) or a logged table ``(project, run, key[, step])``.
    """
    if source is None:
        from embproj_panel import datasets

        return datasets.digits(), []
    if source[0] == "wandb":
        from embproj_panel.wandb_io import load_source

        loaded = load_source(source[1])
        return loaded.table, loaded.notes
    from embproj_panel.store import load_table

    # a table logged as a dataset (>= 1M rows) stays lazy: a DatasetTable
    return as_table(load_table(*source)), []
