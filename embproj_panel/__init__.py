"""embproj-panel: an embedding projector for Python.

Build a W&B-style :class:`Table` of embeddings, log it to a local run store with
:func:`init` / :func:`log` / :func:`finish`, project it with :func:`project` (PCA, UMAP,
t-SNE on every row) and explore it in :class:`Projector`, served or inline in Jupyter.

Heavy modules (Panel, umap-learn, openTSNE) are imported lazily: ``import embproj_panel``
never compiles numba code.
"""

from __future__ import annotations

import importlib
from typing import Any

from embproj_panel.images import Image
from embproj_panel.table import Table

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "datasets": "embproj_panel.datasets",
    "Dataset": "embproj_panel.dataset",  # lazy Parquet datasets (out of core, Dask)
    # run store
    "init": "embproj_panel.store",
    "log": "embproj_panel.store",
    "finish": "embproj_panel.store",
    "Run": "embproj_panel.store",
    "list_projects": "embproj_panel.store",
    "list_runs": "embproj_panel.store",
    "list_tables": "embproj_panel.store",
    "list_entries": "embproj_panel.store",
    "load_table": "embproj_panel.store",
    # Weights & Biases tables (wandb itself stays optional)
    "load_wandb": "embproj_panel.wandb_io",
    "list_wandb": "embproj_panel.wandb_io",
    # projection engine
    "project": "embproj_panel.compute",
    "project_async": "embproj_panel.compute",
    "ProjectionJob": "embproj_panel.compute",
    "Projection": "embproj_panel.compute",
    "warm_up": "embproj_panel.compute",
    # how far to trust a map (a module named faithfulness would shadow the function)
    "faithfulness": "embproj_panel.trust",
    # app
    "extension": "embproj_panel.resources",
    "Projector": "embproj_panel.views",
    "Compare": "embproj_panel.views",
    "CompareState": "embproj_panel.comparison",
    "views": "embproj_panel.views",
    "ProjectorState": "embproj_panel.state",
}

__all__ = ["Image", "Table", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'embproj_panel' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
