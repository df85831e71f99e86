"""Dimensionality reducers (PCA, UMAP, t-SNE) behind one interface, registered by name.

Every reducer follows scikit-learn's conventions: hyperparameters are set in ``__init__`` and
stored unmodified (``random_state`` included), validated only when fitting, and the heavy
backends (scikit-learn, umap-learn, openTSNE, numba) are imported inside the methods that use
them. ``fit_transform(X, progress=None, cancel=None)`` returns ``(n, 2)`` float32 coordinates
and leaves an account of what it did in fitted attributes:

``effective_params_``   the parameters actually used (after data-dependent clamping; the seed
                        drawn when ``random_state=None``), enough to reproduce the result;
``warnings_``           human-readable notes, e.g. "perplexity 30 lowered to 3 for 10 rows";
``method_``             the method actually used (``"pca"`` when a tiny input fell back to it);
``explained_variance_`` PCA only: the explained-variance ratio of components 1..10.

``progress(fraction)`` is called with fractions rising from 0 to 1. ``cancel()`` is polled
between steps; when it returns True the reducer raises :class:`Cancelled` soon after. The
granularity is stated per class.

The UI builds its widgets from :meth:`Reducer.param_specs`: name -> :class:`ParamSpec`
(default, bounds or choices, step, doc).

Degenerate inputs never crash: one row is placed at (0, 0); rows that are all identical (or
a matrix with no columns left) at (0, 0) with a warning; a single column gives x = the
(centred) value and y = 0; UMAP and t-SNE on fewer than :data:`MIN_ROWS_NONLINEAR` distinct
rows fall back to PCA and say so. Exact duplicate rows are embedded once and share a
position.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from embproj_panel import _tsne_engine, _umap_engine
from embproj_panel._runtime import Cancelled, configure_numba_cache
from embproj_panel._sample_index import SampleIndex

__all__ = [
    "MIN_ROWS_NONLINEAR",
    "PCA",
    "REDUCERS",
    "TSNE",
    "UMAP",
    "Cancelled",
    "ParamSpec",
    "Reducer",
    "configure_numba_cache",
    "get_reducer",
]

Progress = Callable[[float], None] | None
Cancel = Callable[[], bool] | None

#: UMAP and t-SNE on fewer distinct rows than this fall back to PCA (with a warning): their
#: neighbourhood graphs need a few neighbours per point to mean anything.
MIN_ROWS_NONLINEAR = 5

# Rows fitted by default when UMAP / t-SNE sample (their ``sample_size``): on the 1,000,000 x
# 64 blobs a 20,000-row UMAP fit placed the rest with trustworthiness 0.979, as a 100,000-row
# fit did; the fit is most of the time, so these sizes keep a million rows within a minute
# (UMAP) and three (t-SNE) on two cores. UMAP's was 50,000: on the 200,000-row blobs 25,000
# gave trustworthiness 0.9784 against 0.9782 for 16.4 CPU-s against 30.4 (the 200-epoch fit
# of the sample is 2/3 of the CPU), and at a million rows 50,000 needed ~40 CPU-s, which
# on two shared cores (load 5-10) was 55-112 s of wall time.
UMAP_SAMPLE_SIZE = 25_000
TSNE_SAMPLE_SIZE = 25_000

# Chunk of rows for the streaming PCA passes: bounded float64 temporaries.
_PCA_CHUNK_ROWS = 65536


# -- parameter metadata -----------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """What one hyperparameter accepts, for validation and for building a widget.

    Attributes
    ----------
    name
        Parameter name (as in ``__init__``).
    default
        Default value.
    type
        ``"int"``, ``"float"``, ``"bool"``, ``"choice"`` or ``"seed"`` (an int >= 0 or None).
    bounds
        Inclusive ``(low, high)`` for ints and floats.
    choices
        Allowed values for ``"choice"``.
    step
        A sensible widget step for ints and floats.
    special
        Non-numeric values also accepted, e.g. ``("auto",)`` or ``(None,)``.
    doc
        One sentence for a tooltip.
    """

    name: str
    default: Any
    type: str
    bounds: tuple[float, float] | None = None
    choices: tuple[Any, ...] | None = None
    step: float | None = None
    special: tuple[Any, ...] = ()
    doc: str = ""

    def validate(self, value: Any, owner: str) -> Any:
        """Return ``value`` if it is acceptable, else raise ValueError naming the bounds."""
        if any(value is s or (isinstance(s, str) and value == s) for s in self.special):
            return value
        where = f"{owner} {self.name}"
        extra = f" (or {', '.join(map(repr, self.special))})" if self.special else ""
        if self.type == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise ValueError(f"{where} must be True or False; got {value!r}.")
        if self.type == "choice":
            if value in self.choices:
                return value
            raise ValueError(
                f"{where} must be one of {', '.join(map(repr, self.choices))}; got {value!r}."
            )
        if self.type == "seed":
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
                return int(value)
            raise ValueError(f"{where} must be an integer >= 0 or None; got {value!r}.")
        is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        is_number = is_int or isinstance(value, (float, np.floating))
        if self.type == "int" and not is_int:
            raise ValueError(f"{where} must be an integer{extra}; got {value!r}.")
        if not is_number or not math.isfinite(value):
            raise ValueError(f"{where} must be a number{extra}; got {value!r}.")
        low, high = self.bounds
        if not low <= value <= high:
            raise ValueError(f"{where} must be between {low:g} and {high:g}{extra}; got {value!r}.")
        return int(value) if self.type == "int" else float(value)


def _seed_spec() -> ParamSpec:
    return ParamSpec("random_state", 0, "seed", special=(None,),
                     doc="Seed; the same seed gives the same layout. None draws one (reported).")


def _pca_dims_spec() -> ParamSpec:
    return ParamSpec("pca_dims", 50, "int", bounds=(2, 1000), step=1, special=(None,),
                     doc="Reduce inputs wider than this with PCA first (None: never).")


def _full_fit_spec(what: str) -> ParamSpec:
    return ParamSpec("full_fit", False, "bool",
                     doc=f"Fit {what} on every row even above sample_size rows (slow).")


def _sample_size_spec(default: int) -> ParamSpec:
    return ParamSpec("sample_size", default, "int", bounds=(1_000, 10_000_000), step=1_000,
                     doc="Above this many rows, fit on a sample this large and place the "
                         "other rows from their nearest neighbours in it (stated).")


# -- base class -------------------------------------------------------------------------------


class Reducer:
    """Common machinery: parameters, validation, degenerate inputs, duplicates, progress.

    Subclasses declare ``name``, ``label``, ``_specs`` and implement ``_embed``.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    _specs: ClassVar[tuple[ParamSpec, ...]] = ()
    # UMAP and t-SNE embed each distinct row once (duplicates share its position).
    _deduplicate: ClassVar[bool] = False
    #: Whether a distance in the layout means the same along both axes (PCA, UMAP, t-SNE):
    #: the map then keeps one data unit the same number of pixels on x and y.
    isotropic: ClassVar[bool] = True

    # -- scikit-learn estimator protocol ----------------------------------------------------
    @classmethod
    def param_specs(cls) -> dict[str, ParamSpec]:
        """Every hyperparameter's :class:`ParamSpec`, in ``__init__`` order."""
        return {spec.name: spec for spec in cls._specs}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters as given to ``__init__`` (scikit-learn protocol)."""
        del deep  # no nested estimators
        return {spec.name: getattr(self, spec.name) for spec in self._specs}

    def set_params(self, **params: Any) -> Reducer:
        """Set hyperparameters (validated at fit time, as in scikit-learn)."""
        specs = self.param_specs()
        for key, value in params.items():
            if key not in specs:
                raise ValueError(
                    f"{self.label} has no parameter {key!r}; its parameters are "
                    f"{', '.join(specs)}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        changed = [f"{s.name}={getattr(self, s.name)!r}" for s in self._specs
                   if getattr(self, s.name) is not s.default
                   and getattr(self, s.name) != s.default]
        return f"{type(self).__name__}({', '.join(changed)})"

    def validated_params(self) -> dict[str, Any]:
        """The hyperparameters checked against their specs and normalised (``15.0`` -> 15).

        ``fit_transform`` calls this first; callers may call it earlier to fail fast.

        Raises
        ------
        ValueError
            A parameter out of bounds or of the wrong type (the message names the bounds).
        """
        params = {s.name: s.validate(getattr(self, s.name), self.label) for s in self._specs}
        self._check(params)
        return params

    def _check(self, params: dict[str, Any]) -> None:
        """Cross-parameter checks (subclasses)."""

    # -- fitting ----------------------------------------------------------------------------
    def fit_transform(self, X: np.ndarray, progress: Progress = None,
                      cancel: Cancel = None) -> np.ndarray:
        """Embed ``X`` in two dimensions.

        Parameters
        ----------
        X
            ``(n, d)`` finite numbers (float32 preferred; other dtypes are converted).
        progress
            Called with a fraction in [0, 1], rising, ending at 1.
        cancel
            Polled between steps; returning True makes the call raise :class:`Cancelled`.

        Returns
        -------
        numpy.ndarray
            ``(n, 2)`` float32, C-contiguous.

        Raises
        ------
        ValueError
            Invalid hyperparameters (naming the bounds), no rows, or non-finite values.
        Cancelled
            When ``cancel()`` returned True.
        """
        params = self.validated_params()
        X = _as_matrix(X)
        report = _Progress(progress, cancel)
        self.warnings_: list[str] = []
        self.method_ = self.name
        self.explained_variance_: tuple[float, ...] | None = None
        if params.get("random_state", 0) is None:
            # Reproducible after the fact: the drawn seed is reported in effective_params_.
            params["random_state"] = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        self.effective_params_ = dict(params)
        n, d = X.shape
        if n == 0:
            raise ValueError(f"{self.label} needs at least one row; got 0.")
        report.check()

        if n == 1:
            coords = np.zeros((1, 2), dtype=np.float32)
        elif d == 0:
            self.warnings_.append(
                f"Every row has the same features: all {n} points are placed at (0, 0)."
            )
            coords = np.zeros((n, 2), dtype=np.float32)
        elif self._deduplicate:
            coords = self._embed_unique(X, params, report)
        else:
            coords = self._embed(X, params, report)
        report(1.0)
        return np.ascontiguousarray(coords, dtype=np.float32)

    def _embed_unique(self, X: np.ndarray, params: dict[str, Any], report: _Progress) -> np.ndarray:
        first, inverse = _unique_rows(X)
        n, n_unique = X.shape[0], len(first)
        if n_unique < n:
            self.warnings_.append(
                f"{n - n_unique} of {n} rows duplicate another row exactly; each set of "
                "duplicates shares one position."
            )
            X = X[first]
        report.check()
        if n_unique == 1:
            self.warnings_.append(f"All {n} rows are identical: every point is at (0, 0).")
            coords = np.zeros((1, 2), dtype=np.float32)
        elif X.shape[1] == 1:
            self.warnings_.append(
                f"Only one usable column: x is its (centred) value and y = 0 ({self.label} "
                "needs at least two)."
            )
            coords = _one_column(X)
            self.method_ = "pca"
        elif n_unique < MIN_ROWS_NONLINEAR:
            self.warnings_.append(
                f"{self.label} needs at least {MIN_ROWS_NONLINEAR} distinct rows; with "
                f"{n_unique}, PCA was used instead."
            )
            self.method_ = "pca"
            coords, ratios, _ = _pca(X, (1, 2), False, 0, report)
            self.explained_variance_ = ratios
        else:
            coords = self._embed(X, params, report)
        return coords if n_unique == n else coords[inverse]

    def _embed(self, X: np.ndarray, params: dict[str, Any], report: _Progress) -> np.ndarray:
        raise NotImplementedError

    # -- shared steps for the neighbour-graph methods ----------------------------------------
    def _pre_reduce(self, X: np.ndarray, metric: str, params: dict[str, Any],
                    report: _Progress, span: tuple[float, float],
                    lazy: bool = False) -> tuple[np.ndarray | _ProjectedRows, str]:
        """Optional PCA to ``pca_dims`` before a neighbour search; returns (X, metric).

        With ``lazy`` (a sample fit, where only the sample is needed whole and the other
        rows a block at a time) the reduced rows are a :class:`_ProjectedRows`, computed
        when indexed, rather than an (n, pca_dims) matrix: at a million rows that matrix
        was most of the projection's peak memory (0.8x the input).

        PCA keeps Euclidean distances (up to the discarded variance), so it is applied for
        ``euclidean``; for ``cosine`` (and ``correlation``) the rows are first centred (for
        correlation) and scaled to unit length, where Euclidean distance orders neighbours
        exactly as the angular distance does, and the search then runs Euclidean. It is
        skipped for ``manhattan``, which a rotation does not preserve.
        """
        target = params["pca_dims"]
        d = X.shape[1]
        if target is None or d <= target:
            self.effective_params_["pca_dims"] = None
            return X, metric
        if metric == "manhattan":
            self.warnings_.append(
                f"PCA pre-reduction skipped: it does not preserve manhattan distances "
                f"({d} dimensions used as they are)."
            )
            self.effective_params_["pca_dims"] = None
            return X, metric
        if metric in ("cosine", "correlation"):
            X = _unit_rows(X, center=metric == "correlation")
        k = min(target, X.shape[0] - 1, d)
        sub = report.sub(*span)
        components = tuple(range(1, k + 1))
        self.effective_params_["pca_dims"] = k
        if lazy:
            weights, offset, _, _ = _pca_weights(X, components, False, params["random_state"],
                                                 sub)
            return _ProjectedRows(X, weights, offset), "euclidean"
        reduced, _, _ = _pca(X, components, False, params["random_state"], sub)
        return reduced, "euclidean"

    def _fit_sample(self, n: int, params: dict[str, Any], placed_with: str) -> np.ndarray | None:
        """Sorted positions of the rows to fit on, or None to fit every row.

        Above ``sample_size`` rows (unless ``full_fit``) the layout is fitted on a seeded
        random sample and the other rows are placed with ``placed_with``; ``warnings_`` says so.
        """
        if n <= params["sample_size"] or params["full_fit"]:
            return None
        rng = np.random.default_rng(params["random_state"])
        sample = np.sort(rng.choice(n, params["sample_size"], replace=False))
        self.warnings_.append(
            f"{self.label} was fitted on a random sample of {len(sample):,} of {n:,} rows; the "
            f"other rows were placed with {placed_with}. Set full_fit=True to fit every row."
        )
        return sample


# -- PCA --------------------------------------------------------------------------------------


class PCA(Reducer):
    """Principal component analysis: two chosen components on x and y.

    Parameters
    ----------
    x_component, y_component
        Which principal components (1-based, 1-10) go on x and y.
    standardize
        Scale every column to unit variance first (PCA of the correlation matrix).
    random_state
        Seed of the randomized SVD used for very wide inputs (> 1,000 columns).

    Notes
    -----
    For up to 1,000 columns the covariance matrix is accumulated over row chunks (float32
    BLAS per chunk, summed in float64) and diagonalised exactly: no centred copy of the data
    is made, and the result does not depend on a seed. Wider inputs use scikit-learn's randomized SVD (exact SVD when small).
    Components are sign-normalised (largest loading positive) so layouts do not flip.
    Progress is reported per chunk of 65,536 rows; cancel is polled at the same points.
    """

    name = "pca"
    label = "PCA"
    _specs = (
        ParamSpec("x_component", 1, "int", bounds=(1, 10), step=1,
                  doc="Principal component on the x axis."),
        ParamSpec("y_component", 2, "int", bounds=(1, 10), step=1,
                  doc="Principal component on the y axis."),
        ParamSpec("standardize", False, "bool",
                  doc="Scale every column to unit variance before the PCA."),
        _seed_spec(),
    )

    def __init__(self, x_component: int = 1, y_component: int = 2, standardize: bool = False,
                 random_state: int | None = 0) -> None:
        self.x_component = x_component
        self.y_component = y_component
        self.standardize = standardize
        self.random_state = random_state

    def _embed(self, X: np.ndarray, params: dict[str, Any], report: _Progress) -> np.ndarray:
        wanted = (params["x_component"], params["y_component"])
        coords, ratios, solver = _pca(X, wanted, params["standardize"], params["random_state"],
                                      report, n_ratios=10)
        self.explained_variance_ = ratios
        self.effective_params_["solver"] = solver
        rank = min(X.shape[0] - 1, X.shape[1])
        for axis, component in zip("xy", wanted):
            if component > rank:
                self.warnings_.append(
                    f"Component {component} does not exist for {X.shape[0]} rows x "
                    f"{X.shape[1]} columns (at most {rank}): {axis} = 0."
                )
        return coords


# -- UMAP -------------------------------------------------------------------------------------


class UMAP(Reducer):
    """UMAP (umap-learn's neighbour graph, spectral start and objective).

    Parameters
    ----------
    n_neighbors
        Size of the local neighbourhood (2-200); lowered to n - 1 for small inputs.
    min_dist
        Minimum distance between embedded points (0-0.99); must not exceed ``spread``.
    spread
        Scale of the embedded points (0.1-10).
    metric
        ``"euclidean"``, ``"cosine"``, ``"correlation"`` or ``"manhattan"``. For cosine
        (and correlation) the rows are scaled to unit length (centred first) and compared
        with Euclidean distance, which orders neighbours exactly as the cosine distance
        does (``|a - b| = sqrt(2 * cosine_distance)``).
    n_epochs
        Optimisation epochs (10-5000), or ``"auto"``: 500 up to 10,000 rows, else 200
        (umap-learn's rule).
    random_state
        Seed (default 0). The layout is identical for the same seed, data and parameters,
        whatever the number of threads; None draws a seed and reports it.
    pca_dims
        Inputs wider than this are first reduced with PCA (default 50; None: never).
    full_fit, sample_size
        Above ``sample_size`` rows (default 25,000) UMAP is fitted on a seeded random sample
        of that size and every other row is placed from its ``n_neighbors`` approximate
        nearest sample rows (an inverted-file search, recall about 0.7): umap-learn's
        ``transform`` memberships, a start at their weighted mean, then a few epochs
        (``_umap_engine.PLACE_EPOCHS``) of the kernel at a quarter of the learning rate with
        the sample fixed, in place of ``transform``'s full search and n_epochs / 3 epochs.
        ``warnings_`` says so. ``full_fit=True`` fits every row.

    Notes
    -----
    The steps are umap-learn's: nearest neighbours, ``fuzzy_simplicial_set``,
    ``spectral_layout``, then the stochastic gradient descent. The neighbours are exact up
    to 4,096 rows and come from a seeded Annoy forest above (see ``_umap_engine.knn``: pynndescent,
    umap-learn's choice, recompiles for ~25 s in every new process). The descent is this
    module's own numba kernel, written to be reproducible *and* parallel: umap-learn can only be reproducible single-threaded (with a seed it turns its
    parallel mode off, since threads race on shared points). Here each epoch reads the
    other points' positions from a snapshot taken at the start of the epoch and every
    point's updates are made by one thread, so no two threads touch the same memory; as
    each edge is stored in both directions, a point's attraction along an edge is applied
    with twice the step, matching umap-learn, which moves both ends of every directed edge.
    The kernel is cached on disk by numba (compiled once per machine).

    Progress: about 0.25 after the neighbour graph and initialisation, then once per epoch;
    cancel is polled before the neighbour search, after it, and at every epoch (the
    neighbour search itself cannot be interrupted).
    """

    name = "umap"
    label = "UMAP"
    _deduplicate = True
    _specs = (
        ParamSpec("n_neighbors", 15, "int", bounds=(2, 200), step=1,
                  doc="Neighbours per point: small values show local detail, large ones the "
                      "global shape."),
        ParamSpec("min_dist", 0.1, "float", bounds=(0.0, 0.99), step=0.01,
                  doc="How tightly points may be packed together."),
        ParamSpec("spread", 1.0, "float", bounds=(0.1, 10.0), step=0.1,
                  doc="Scale of the embedded points (with min_dist, how clustered)."),
        ParamSpec("metric", "euclidean", "choice",
                  choices=("euclidean", "cosine", "correlation", "manhattan"),
                  doc="Distance between input vectors."),
        ParamSpec("n_epochs", "auto", "int", bounds=(10, 5000), step=10, special=("auto",),
                  doc="Optimisation epochs; auto: 500 up to 10,000 rows, else 200."),
        _seed_spec(),
        _pca_dims_spec(),
        _full_fit_spec("UMAP"),
        _sample_size_spec(UMAP_SAMPLE_SIZE),
    )

    def __init__(self, n_neighbors: int = 15, min_dist: float = 0.1, spread: float = 1.0,
                 metric: str = "euclidean", n_epochs: int | str = "auto",
                 random_state: int | None = 0, pca_dims: int | None = 50,
                 full_fit: bool = False, sample_size: int = UMAP_SAMPLE_SIZE) -> None:
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.spread = spread
        self.metric = metric
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.pca_dims = pca_dims
        self.full_fit = full_fit
        self.sample_size = sample_size

    def _check(self, params: dict[str, Any]) -> None:
        if params["min_dist"] > params["spread"]:
            raise ValueError(
                f"UMAP min_dist ({params['min_dist']:g}) must not exceed spread "
                f"({params['spread']:g})."
            )

    def _embed(self, X: np.ndarray, params: dict[str, Any], report: _Progress) -> np.ndarray:
        configure_numba_cache()  # before umap-learn (and numba) are imported
        metric = params["metric"]
        if metric in ("cosine", "correlation"):
            # Unit-length rows (centred first for correlation): Euclidean distance then
            # ranks neighbours exactly as the angular distance does (|a - b|^2 = 2 cos_d).
            X = _unit_rows(X, center=metric == "correlation")
            metric = "euclidean"
        n = X.shape[0]
        sampled = not params["full_fit"] and n > params["sample_size"]
        X, metric = self._pre_reduce(X, metric, params, report, (0.0, 0.05), lazy=sampled)
        seed = params["random_state"]
        fitted = n if params["full_fit"] else min(n, params["sample_size"])
        k = min(params["n_neighbors"], fitted - 1)
        sample = self._fit_sample(
            n, params,
            f"their {k} approximate nearest neighbours in the sample (each starts at the "
            f"neighbours' membership-weighted mean, then {_umap_engine.PLACE_EPOCHS} epochs "
            "move it with the sample fixed)",
        )
        fit_X = X if sample is None else X[sample]
        if k < params["n_neighbors"]:
            self.warnings_.append(
                f"n_neighbors {params['n_neighbors']} lowered to {k} for {fit_X.shape[0]} rows."
            )
        self.effective_params_["n_neighbors"] = k
        n_epochs = params["n_epochs"]
        if n_epochs == "auto":
            n_epochs = 500 if fit_X.shape[0] <= 10_000 else 200
        self.effective_params_["n_epochs"] = n_epochs
        fit_span = (0.05, 1.0) if sample is None else (0.05, 0.75)
        model = _umap_engine.fit(fit_X, k, metric, params["min_dist"], params["spread"],
                                 n_epochs, seed, report.sub(*fit_span), self.warnings_)
        if sample is None:
            return model.embedding
        index = SampleIndex(fit_X, metric, seed)
        rest = np.ones(n, dtype=bool)
        rest[sample] = False
        coords = np.empty((n, 2), dtype=np.float32)
        coords[sample] = model.embedding
        coords[rest] = _umap_engine.place(model, index, X, np.flatnonzero(rest),
                                          _umap_engine.PLACE_EPOCHS, seed,
                                          report.sub(0.75, 1.0))
        return coords


# -- t-SNE ------------------------------------------------------------------------------------


class TSNE(Reducer):
    """t-SNE with openTSNE: FFT-accelerated gradients from 10,000 rows, Barnes-Hut below.

    Parameters
    ----------
    perplexity
        Effective number of neighbours (2-100); lowered to (n - 1) / 3 for small inputs.
    learning_rate
        ``"auto"`` (openTSNE's rule: max(200, n / exaggeration)) or 10-1000.
    n_iter
        Total iterations (250-5000) as in scikit-learn's ``max_iter``: the first
        ``min(250, n_iter // 3)`` with early exaggeration, the rest without.
    early_exaggeration
        Exaggeration of the early phase (1-100).
    metric
        ``"euclidean"`` or ``"cosine"``.
    random_state
        Seed (default 0): same seed, data and parameters give identical coordinates.
    pca_dims
        Inputs wider than this are first reduced with PCA (default 50; None: never).
    full_fit, sample_size
        Above ``sample_size`` rows (default 25,000) t-SNE is fitted on a seeded random
        sample of that size and every other row is placed at the weighted mean of its 15
        approximate nearest sample rows, not optimised further (openTSNE's ``transform``
        would optimise each for 250 iterations). ``warnings_`` says so. ``full_fit=True``
        fits every row.

    Notes
    -----
    Defaults match openTSNE's (250 exaggerated + 500 normal iterations, PCA start), except
    that the FFT grid uses intervals twice as wide (``ints_in_interval=2``): the grid grows
    with the embedding's extent and dominates the late iterations, and on 20,000 x 64
    clustered data this halved their cost with no change in trustworthiness (0.990 both).
    Progress: 0.2 after the affinities (not interruptible), then every few iterations
    (every 2-25 depending on n, about a fraction of a second apart); cancel is polled at the
    same points.
    """

    name = "tsne"
    label = "t-SNE"
    _deduplicate = True
    _specs = (
        ParamSpec("perplexity", 30.0, "float", bounds=(2.0, 100.0), step=1.0,
                  doc="Effective number of neighbours each point keeps close."),
        ParamSpec("learning_rate", "auto", "float", bounds=(10.0, 1000.0), step=10.0,
                  special=("auto",), doc="Step size; auto: max(200, n / exaggeration)."),
        ParamSpec("n_iter", 750, "int", bounds=(250, 5000), step=50,
                  doc="Total iterations, the first up to 250 with early exaggeration."),
        ParamSpec("early_exaggeration", 12.0, "float", bounds=(1.0, 100.0), step=1.0,
                  doc="How strongly clusters are pulled together early on."),
        ParamSpec("metric", "euclidean", "choice", choices=("euclidean", "cosine"),
                  doc="Distance between input vectors."),
        _seed_spec(),
        _pca_dims_spec(),
        _full_fit_spec("t-SNE"),
        _sample_size_spec(TSNE_SAMPLE_SIZE),
    )

    def __init__(self, perplexity: float = 30.0, learning_rate: float | str = "auto",
                 n_iter: int = 750, early_exaggeration: float = 12.0,
                 metric: str = "euclidean", random_state: int | None = 0,
                 pca_dims: int | None = 50, full_fit: bool = False,
                 sample_size: int = TSNE_SAMPLE_SIZE) -> None:
        self.perplexity = perplexity
        self.learning_rate = learning_rate
        self.n_iter = n_iter
        self.early_exaggeration = early_exaggeration
        self.metric = metric
        self.random_state = random_state
        self.pca_dims = pca_dims
        self.full_fit = full_fit
        self.sample_size = sample_size

    def _embed(self, X: np.ndarray, params: dict[str, Any], report: _Progress) -> np.ndarray:
        n = X.shape[0]
        sampled = not params["full_fit"] and n > params["sample_size"]
        X, metric = self._pre_reduce(X, params["metric"], params, report, (0.0, 0.05),
                                     lazy=sampled)
        sample = self._fit_sample(
            n, params,
            f"the weighted mean of the positions of their {_tsne_engine.PLACE_NEIGHBOURS} "
            "approximate nearest neighbours in the sample (not optimised further)",
        )
        fit_X = X if sample is None else X[sample]
        m = fit_X.shape[0]
        perplexity = params["perplexity"]
        # openTSNE uses 3 * perplexity neighbours, which must be fewer than the rows.
        limit = (m - 1) / 3
        if perplexity > limit:
            perplexity = float(math.floor(limit * 100) / 100)
            self.warnings_.append(
                f"perplexity {params['perplexity']:g} lowered to {perplexity:g} for {m} rows."
            )
        self.effective_params_["perplexity"] = perplexity
        fit_span = (0.05, 1.0) if sample is None else (0.05, 0.9)
        # openTSNE's own rule: Barnes-Hut below 10,000 rows, where the FFT's fixed grid cost
        # dominates (digits: 2.6 s against 19 s), FFT interpolation above.
        gradient = "fft" if m >= 10_000 else "bh"
        self.effective_params_["negative_gradient_method"] = gradient
        embedding = np.asarray(_tsne_engine.fit(fit_X, perplexity, params, metric, gradient,
                                                 report.sub(*fit_span)), dtype=np.float32)
        if sample is None:
            return embedding
        index = SampleIndex(fit_X, metric, params["random_state"])
        rest = np.ones(n, dtype=bool)
        rest[sample] = False
        coords = np.empty((n, 2), dtype=np.float32)
        coords[sample] = embedding
        coords[rest] = _tsne_engine.place(embedding, index, X, np.flatnonzero(rest),
                                          report.sub(0.9, 1.0))
        return coords


#: Reducers by name.
REDUCERS: dict[str, type[Reducer]] = {cls.name: cls for cls in (PCA, UMAP, TSNE)}


def get_reducer(method: str, **params: Any) -> Reducer:
    """Instantiate the reducer registered as ``method`` with ``params``.

    Raises
    ------
    ValueError
        For an unknown method or parameter (the message lists the valid ones).
    """
    try:
        cls = REDUCERS[method]
    except KeyError:
        raise ValueError(
            f"Unknown projection method {method!r}; choose one of {', '.join(REDUCERS)}."
        ) from None
    return cls().set_params(**params)


# -- helpers: progress, input checks ----------------------------------------------------------


class _Progress:
    """Maps a step's own 0..1 progress into a span of the caller's, and polls cancel."""

    def __init__(self, progress: Progress, cancel: Cancel, low: float = 0.0,
                 high: float = 1.0) -> None:
        self._progress = progress
        self._cancel = cancel
        self._low = low
        self._high = high

    def check(self) -> None:
        if self._cancel is not None and self._cancel():
            raise Cancelled("Cancelled.")

    def __call__(self, fraction: float) -> None:
        self.check()
        if self._progress is not None:
            self._progress(self._low + (self._high - self._low) * min(1.0, max(0.0, fraction)))

    def sub(self, low: float, high: float) -> _Progress:
        width = self._high - self._low
        return _Progress(self._progress, self._cancel, self._low + width * low,
                         self._low + width * high)


def _as_matrix(X: Any) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D array (rows x dimensions); got shape {X.shape}.")
    if X.dtype != np.float32 or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=np.float32)
    for start in range(0, X.shape[0], _PCA_CHUNK_ROWS):  # chunks: no n x d mask
        if not np.isfinite(X[start:start + _PCA_CHUNK_ROWS]).all():
            raise ValueError(
                "The matrix holds NaN or inf; prepare_features() leaves such rows out."
            )
    return X


def _unique_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first occurrence of each distinct row (ascending) and the inverse map.

    Rows are hashed (a random linear hash of their bits, -0.0 read as 0.0) rather than
    sorted as byte strings, which is much faster for wide rows; every match is then
    verified, and a hash collision between different rows falls back to ``np.unique``.
    """
    n, d = X.shape
    multipliers = np.random.default_rng(0x5EED).integers(1, 2**63, size=d, dtype=np.uint64) | 1
    hashes = np.empty(n, dtype=np.uint64)
    for start in range(0, n, _PCA_CHUNK_ROWS):
        block = (X[start:start + _PCA_CHUNK_ROWS] + np.float32(0.0)).view(np.uint32)
        with np.errstate(over="ignore"):
            hashes[start:start + _PCA_CHUNK_ROWS] = block.astype(np.uint64) @ multipliers
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    if len(first) == n:
        return np.arange(n), np.arange(n)
    # Order the distinct rows by first appearance, so the result does not depend on hashes.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first, inverse = first[order], rank[inverse.ravel()]
    for start in range(0, n, _PCA_CHUNK_ROWS):
        stop = start + _PCA_CHUNK_ROWS
        if not np.array_equal(X[start:stop], X[first[inverse[start:stop]]]):
            _, first, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            return first[order], rank[inverse.ravel()]
    return first, inverse


def _one_column(X: np.ndarray) -> np.ndarray:
    coords = np.zeros((X.shape[0], 2), dtype=np.float32)
    coords[:, 0] = X[:, 0] - X[:, 0].mean(dtype=np.float64)
    return coords


def _unit_rows(X: np.ndarray, center: bool) -> np.ndarray:
    X = X - X.mean(axis=1, keepdims=True) if center else X.copy()
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # a zero row stays at the origin
    X /= norms
    return X


# -- PCA engine -------------------------------------------------------------------------------


def _pca(X: np.ndarray, components: tuple[int, ...], standardize: bool, seed: int,
         report: _Progress, n_ratios: int = 0) -> tuple[np.ndarray, tuple[float, ...], str]:
    """Project ``X`` on the given 1-based principal components.

    Returns the ``(n, len(components))`` float32 coordinates, the explained-variance ratios
    of components ``1..max(n_ratios, max(components))`` (those that exist), and the solver.
    Components beyond the rank of the data are 0.
    """
    weights, offset, ratios, solver = _pca_weights(X, components, standardize, seed, report,
                                                   n_ratios)
    n = X.shape[0]
    coords = np.empty((n, len(components)), dtype=np.float32)
    step = _PCA_CHUNK_ROWS
    for start in range(0, n, step):
        coords[start:start + step] = X[start:start + step] @ weights - offset
        report(0.7 + 0.3 * min(1.0, (start + step) / n))
    return coords, ratios, solver


def _pca_weights(X: np.ndarray, components: tuple[int, ...], standardize: bool, seed: int,
                 report: _Progress, n_ratios: int = 0):
    """The fit of :func:`_pca`: coordinates are ``X @ weights - offset``.

    Returns ``weights`` ((d, len(components)) float32), ``offset`` (float64), the ratios
    and the solver, as :func:`_pca` does.
    """
    n, d = X.shape
    top = max(components)
    if d <= 1000:
        loadings, variances, total, mean, scale = _pca_covariance(X, top, standardize, report)
        solver = "covariance"
    else:
        loadings, variances, total, mean, scale = _pca_svd(X, min(top, n, d), standardize,
                                                           seed)
        solver = "randomized" if min(n, d) > 500 else "full"
    weights, offset, ratios = _pick_components(loadings, variances, total, mean, scale,
                                               components, n_ratios)
    return weights, offset, ratios, solver


def _pick_components(loadings: np.ndarray, variances: np.ndarray, total: float,
                     mean: np.ndarray, scale: np.ndarray, components: tuple[int, ...],
                     n_ratios: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Weights ``(d, len(components))`` float32 and offset of the chosen components, ratios.

    A component with (numerically) no variance, or beyond the rank of the data, is noise:
    every point is placed at 0 there. The ratios are those of components
    ``1..max(n_ratios, max(components))`` that exist.
    """
    d = loadings.shape[0]
    tiny = variances <= max(variances.max(initial=0.0), 0.0) * 1e-10
    picked = np.zeros((d, len(components)), dtype=np.float64)
    for j, component in enumerate(components):
        if component <= loadings.shape[1] and not tiny[component - 1]:
            picked[:, j] = loadings[:, component - 1]
    weights = (picked / scale[:, None]).astype(np.float32)
    offset = (mean / scale) @ picked
    count = min(max(n_ratios, max(components)), len(variances))
    ratios = tuple(float(v / total) if total > 0 else 0.0 for v in variances[:count])
    return weights, offset, ratios


class _ProjectedRows:
    """Rows of ``X`` on PCA components, computed when indexed: ``X[rows] @ weights - offset``.

    Stands in for the reduced matrix where only some rows (a sample) or a block at a time
    (the placement's search) are needed; indexing returns float32 rows, the same arithmetic
    as :func:`_pca`'s.
    """

    def __init__(self, X: np.ndarray, weights: np.ndarray, offset: np.ndarray) -> None:
        self._X = X
        self._weights = weights
        self._offset = offset
        self.shape = (X.shape[0], weights.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        block = self._X[rows]
        return np.asarray(block @ self._weights - self._offset, dtype=np.float32)


def _pca_covariance(X, top, standardize, report):
    """Covariance (or correlation) matrix from float64 sums over row chunks, then ``eigh``.

    The same sums as the out-of-core engine's (:func:`scatter_sums` per chunk of
    ``_PCA_CHUNK_ROWS`` rows, combined in order by :func:`combine_sums`): a table and the
    store's dataset of it (row groups of the same size) get the same components.
    """
    n = X.shape[0]

    def chunks():
        for start in range(0, n, _PCA_CHUNK_ROWS):
            yield scatter_sums(X[start:start + _PCA_CHUNK_ROWS])
            report(0.7 * min(1.0, (start + _PCA_CHUNK_ROWS) / n))

    count, mean, scatter = combine_sums(chunks())
    vectors, values, total, mean, scale = covariance_eigen(count, mean, scatter, standardize)
    return vectors[:, :top], values, total, mean, scale


# Rows of one float64 temporary in scatter_sums: 2**21 values (16 MB) at most.
_SCATTER_VALUES = 2**21


def scatter_sums(block: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Row count, mean and centred scatter matrix of a block of rows, in float64.

    The mean is numpy's pairwise float64 sum; the scatter is summed by float64 BLAS products
    over fixed runs of rows, so it depends only on the block's own values (not on where it
    sits or on BLAS's thread count: OpenBLAS splits a product's output, never its sums).
    Temporaries are bounded (16 MB).

    Parameters
    ----------
    block
        ``(m, d)`` float32 or float64 rows, ``m >= 1``.
    """
    m, d = block.shape
    mean = block.mean(axis=0, dtype=np.float64)
    scatter = np.zeros((d, d), dtype=np.float64)
    step = max(1024, _SCATTER_VALUES // max(d, 1))
    for start in range(0, m, step):
        centred = block[start:start + step].astype(np.float64)
        centred -= mean
        scatter += centred.T @ centred
    return m, mean, scatter


def combine_sums(parts) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """Chan's combination of blocks' ``(count, mean, centred scatter)``, in the given order.

    No cancellation however far the data sit from the origin; the same float64 operations
    for the same blocks in the same order. ``(0, None, None)`` for no blocks.
    """
    n, mean, scatter = 0, None, None
    for count, block_mean, block_scatter in parts:
        if mean is None:
            n, mean, scatter = count, block_mean.copy(), block_scatter.copy()
            continue
        total = n + count
        delta = block_mean - mean
        mean += delta * (count / total)
        scatter += block_scatter + np.outer(delta, delta) * (n * count / total)
        n = total
    return n, mean, scatter


def covariance_eigen(n: int, mean: np.ndarray, scatter: np.ndarray, standardize: bool):
    """Principal axes from the combined sums.

    Returns the eigenvectors (columns, by decreasing variance, signs fixed by
    :func:`_flip_signs`), their variances, the total variance, the mean and the per-column
    scale (population standard deviations as scikit-learn's ``StandardScaler`` when
    ``standardize``, else ones).
    """
    d = len(mean)
    cov = scatter / max(n - 1, 1)
    scale = np.ones(d)
    if standardize:
        std = np.sqrt(np.clip(np.diag(cov) * (max(n - 1, 1) / n), 0.0, None))
        scale = np.where(std > 0, std, 1.0)
        cov = cov / np.outer(scale, scale)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values = np.clip(values[order], 0.0, None)
    vectors = _flip_signs(vectors[:, order])
    return vectors, values, float(values.sum()), mean, scale


def _pca_svd(X, k, standardize, seed):
    """scikit-learn's PCA (randomized SVD when large) for inputs wider than 1,000 columns."""
    from sklearn.decomposition import PCA as SkPCA

    mean = X.mean(axis=0, dtype=np.float64)
    scale = np.ones(X.shape[1])
    data = X
    if standardize:
        std = X.std(axis=0, dtype=np.float64)
        scale = np.where(std > 0, std, 1.0)
        data = ((X - mean) / scale).astype(np.float32)
    solver = "randomized" if min(X.shape) > 500 else "full"
    model = SkPCA(n_components=k, svd_solver=solver, random_state=seed).fit(data)
    total = float(np.sum(data.var(axis=0, ddof=1, dtype=np.float64)))
    vectors = _flip_signs(model.components_.T.astype(np.float64))
    return vectors, model.explained_variance_.astype(np.float64), total, mean, scale


def _flip_signs(vectors: np.ndarray) -> np.ndarray:
    """Make each column's largest-magnitude entry positive: a deterministic orientation."""
    biggest = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[biggest, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs
