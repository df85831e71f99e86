"""Clusters on the 2-D layout (HDBSCAN) and the label text of each cluster; no Panel.

:func:`find_clusters` runs scikit-learn's ``HDBSCAN`` on the projected points and returns one
cluster id per input row (``-1``: unclustered, and for rows without a position). Ids are
ordered by size, ``0`` the largest, so the same layout always gives the same ids.

Why not call ``HDBSCAN().fit(coords)`` directly: scikit-learn builds its minimum spanning tree
with Prim's algorithm over *all pairs* of points, which is quadratic (measured here, 2 cores:
20,000 points 1.6 s, 50,000 points 11 s, 100,000 points 55 s). A 2-D layout allows far less
work. We hand HDBSCAN a sparse ``metric="precomputed"`` graph instead: the k nearest
neighbours of every point (they give the exact core distances) joined with the Delaunay
triangulation (it holds the Euclidean minimum spanning tree, so the graph is connected and
separate islands still join at their true distance). scikit-learn then computes the mutual
reachability on that graph and SciPy's sparse minimum spanning tree, O(E log V): 200,000
points take about 2 s here, and on blobs the labels agree with exact HDBSCAN (adjusted Rand
index 1.0; ``benchmarks/bench_clusters.py`` measures it on every run). Small inputs (at most
``EXACT_MAX_ROWS``) take the exact dense path.

Above ``max_rows`` projected rows (default 250,000) a seeded random sample is clustered and
every other row takes the cluster of its nearest sampled row; the result's ``warnings`` say
so, with the numbers. ``progress(fraction)`` and ``cancel()`` callbacks work as in
:mod:`embproj_panel.reducers`, so a background job can report and stop.

:func:`label_clusters` names each cluster from a column: the majority value and its share for
a categorical column (``"7 (92%)"``), the top class-based TF-IDF terms (c-TF-IDF, as BERTopic
and Embedding Atlas) for a text column, and a representative row (the most central member)
for an image column. Label text is plain text: views must render it as text, never HTML.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from embproj_panel.reducers import Cancel, Cancelled, Progress, _Progress

__all__ = [
    "DEFAULT_MAX_ROWS",
    "EXACT_MAX_ROWS",
    "LABEL_KINDS",
    "UNCLUSTERED",
    "Cancelled",
    "ClusterLabel",
    "UNCLUSTERED_LABEL",
    "Clustering",
    "default_min_cluster_size",
    "find_clusters",
    "label_clusters",
    "short_text",
]

UNCLUSTERED = -1
#: The label of the unclustered rows, on the map and in the colour legend.
UNCLUSTERED_LABEL = "unclustered"
# Above this many projected rows a seeded sample is clustered and the rest assigned.
DEFAULT_MAX_ROWS = 250_000
# Up to this many points the exact (dense, quadratic) HDBSCAN costs well under a second.
EXACT_MAX_ROWS = 4_000
# Neighbours per point in the sparse graph: at least min_samples (the core distance needs
# them); 15 keeps the graph's local structure close to the full mutual-reachability graph.
_GRAPH_NEIGHBORS = 15
# The core-distance neighbourhood is capped so that the sparse graph stays bounded
# (rows x min_samples edges).
MAX_MIN_SAMPLES = 100
_CHUNK = 65_536
# c-TF-IDF reads at most this many documents per cluster (a seeded sample of the members).
_TEXT_DOCS_PER_CLUSTER = 2_000
_TEXT_TERMS = 3
_MAX_LABEL_CHARS = 40


def default_min_cluster_size(n_rows: int) -> int:
    """The default smallest cluster: 1% of the rows, at least 5.

    A fixed size would find hundreds of specks in a million points and nothing in a hundred;
    1% gives at most about a hundred clusters at any size, each big enough to see on the map.
    """
    return max(5, int(round(0.01 * n_rows)))


@dataclass(frozen=True)
class Clustering:
    """Clusters of a table's rows on its 2-D layout.

    Attributes
    ----------
    labels
        int64 per input row: the cluster id, ``-1`` for unclustered rows and for rows without
        a position. Ids run ``0 .. n_clusters - 1`` from the largest cluster down.
    sizes
        Rows per cluster id.
    centers
        ``(n_clusters, 2)``: the position of each cluster's most central member (the member
        nearest the cluster's median point; on the points, unlike a mean of a curved
        cluster), where its label goes.
    representatives
        The input row of each cluster's most central member.
    min_cluster_size, min_samples
        The parameters used (for the whole table; see ``warnings`` when a sample was
        clustered).
    n_sampled
        The number of rows HDBSCAN saw when a sample was clustered, else None.
    warnings
        What the user should know: rows without a position, sampling, nothing found.
    elapsed
        Seconds the call took.
    """

    labels: np.ndarray
    sizes: np.ndarray
    centers: np.ndarray
    representatives: np.ndarray
    min_cluster_size: int
    min_samples: int
    n_sampled: int | None = None
    warnings: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def n_clusters(self) -> int:
        return len(self.sizes)

    @property
    def n_unclustered(self) -> int:
        return int(np.count_nonzero(self.labels == UNCLUSTERED))


def _positive_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}; got {value}")
    return int(value)


def find_clusters(
    coords: Any,
    min_cluster_size: int | None = None,
    *,
    min_samples: int | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    random_state: int = 0,
    progress: Progress = None,
    cancel: Cancel = None,
) -> Clustering:
    """Cluster the points of a 2-D layout with HDBSCAN.

    Parameters
    ----------
    coords
        ``(n, 2)`` positions, one row per table row; rows with a NaN (not projected) are
        unclustered.
    min_cluster_size
        The smallest group of rows that counts as a cluster; None:
        :func:`default_min_cluster_size` of the projected rows.
    min_samples
        The neighbourhood of HDBSCAN's core distance (larger: more rows unclustered, smoother
        clusters); None: ``min(min_cluster_size, 10)``. At most ``MAX_MIN_SAMPLES``.
    max_rows
        Above this many projected rows, a seeded random sample of ``max_rows`` is clustered
        and every other row takes the cluster of its nearest sampled row.
    random_state
        Seed of that sample.
    progress, cancel
        ``progress(fraction)`` is called with fractions rising to 1; ``cancel()`` is polled
        between steps (at most a few seconds apart at a million rows) and a True raises
        :class:`Cancelled`.

    Returns
    -------
    Clustering
    """
    start = time.perf_counter()
    report = _Progress(progress, cancel)
    report(0.0)
    points = np.asarray(coords, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"coords must have shape (n, 2); got {points.shape}")
    max_rows = _positive_int(max_rows, "max_rows", 2)
    n = len(points)
    placed = np.flatnonzero(np.isfinite(points).all(axis=1))
    m = len(placed)
    if min_cluster_size is None:
        min_cluster_size = default_min_cluster_size(m)
    min_cluster_size = _positive_int(min_cluster_size, "min_cluster_size", 2)
    if min_samples is None:
        min_samples = min(min_cluster_size, 10)
    min_samples = _positive_int(min_samples, "min_samples", 1)
    if min_samples > MAX_MIN_SAMPLES:
        raise ValueError(f"min_samples must be at most {MAX_MIN_SAMPLES}; got {min_samples}")

    warnings: list[str] = []
    if m < n:
        warnings.append(
            f"{n - m:,} of {n:,} rows have no 2-D position (not projected) and are unclustered."
        )
    labels = np.full(n, UNCLUSTERED, dtype=np.int64)
    if m < max(min_cluster_size, min_samples + 1, 2):
        warnings.append(
            f"Too few projected rows ({m:,}) for clusters of at least {min_cluster_size:,}."
        )
        return _result(labels, points, min_cluster_size, min_samples, None, warnings, start)

    n_sampled = None
    fit_rows = placed
    fit_size, fit_samples = min_cluster_size, min_samples
    if m > max_rows:
        rng = np.random.default_rng(random_state)
        fit_rows = np.sort(rng.choice(placed, size=max_rows, replace=False))
        n_sampled = max_rows
        # A cluster of min_cluster_size rows has about this many rows in the sample.
        fit_size = max(2, int(round(min_cluster_size * max_rows / m)))
        fit_samples = min(min_samples, fit_size)
        warnings.append(
            f"Clustered a random sample of {max_rows:,} of the {m:,} projected rows "
            f"(seed {random_state}, min_cluster_size {min_cluster_size:,} scaled to "
            f"{fit_size:,} on the sample); the other {m - max_rows:,} rows take the cluster "
            "of their nearest sampled row."
        )
    fit_labels = _hdbscan(points[fit_rows], fit_size, fit_samples, report.sub(0.0, 0.85))
    labels[fit_rows] = fit_labels
    if n_sampled is not None:
        rest = np.setdiff1d(placed, fit_rows, assume_unique=True)
        labels[rest] = _nearest_labels(points[fit_rows], fit_labels, points[rest],
                                       report.sub(0.85, 0.97))
    labels = _by_size(labels)
    if not (labels >= 0).any():
        warnings.append(
            f"No clusters of at least {min_cluster_size:,} rows found; try a smaller "
            "min_cluster_size."
        )
    report(0.98)
    return _result(labels, points, min_cluster_size, min_samples, n_sampled, warnings, start,
                   report)


def _hdbscan(X: np.ndarray, min_cluster_size: int, min_samples: int,
             report: _Progress) -> np.ndarray:
    """HDBSCAN labels of 2-D points: exact for small inputs, else on the sparse graph."""
    from sklearn.cluster import HDBSCAN

    if len(X) <= EXACT_MAX_ROWS:
        labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                         copy=True).fit(X).labels_
        report(1.0)
        return labels.astype(np.int64)
    graph = _sparse_graph(X, max(_GRAPH_NEIGHBORS, min_samples), report.sub(0.0, 0.5))
    report(0.5)
    # The sparse rows hold no self-distance, while the dense path counts the point itself
    # among its min_samples neighbours: one fewer here gives the same core distances.
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=max(1, min_samples - 1),
                    metric="precomputed", copy=False)
    labels = model.fit(graph).labels_
    report(1.0)
    return labels.astype(np.int64)


def _sparse_graph(X: np.ndarray, k: int, report: _Progress) -> Any:
    """A symmetric CSR distance graph: the k nearest neighbours plus the Delaunay edges."""
    from scipy import sparse
    from sklearn.neighbors import KDTree

    n = len(X)
    k = min(k, n - 1)
    tree = KDTree(X)
    sources, targets = [], []
    for low in range(0, n, _CHUNK):
        high = min(n, low + _CHUNK)
        _, index = tree.query(X[low:high], k=k + 1)
        sources.append(np.repeat(np.arange(low, high), k + 1))
        targets.append(index.ravel())
        report(0.6 * high / n)
    edges = _connecting_edges(X)
    report(0.85)
    sources.append(edges[:, 0])
    targets.append(edges[:, 1])
    rows = np.concatenate(sources)
    cols = np.concatenate(targets)
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    distance = np.hypot(*(X[rows] - X[cols]).T)
    # Duplicate points are distance 0 apart; a sparse zero is no edge at all, so a tiny
    # positive distance keeps them joined.
    scale = float(np.ptp(X, axis=0).max()) or 1.0
    np.maximum(distance, scale * 1e-12, out=distance)
    graph = sparse.coo_matrix((distance, (rows, cols)), shape=(n, n)).tocsr()
    graph = graph.maximum(graph.T).tocsr()
    graph.sort_indices()
    report(1.0)
    return graph


def _connecting_edges(X: np.ndarray) -> np.ndarray:
    """Edges that join every point into one graph, through the Euclidean MST.

    The Delaunay triangulation contains the Euclidean minimum spanning tree. Points Qhull
    sets aside (duplicates) join their nearest vertex. Degenerate inputs that Qhull cannot
    triangulate (all points on a line) are chained in order along their principal axis,
    which is that line's spanning tree.
    """
    from scipy.spatial import Delaunay, QhullError

    try:
        triangulation = Delaunay(X)
    except (QhullError, ValueError):
        centred = X - X.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        order = np.argsort(centred @ axis, kind="stable")
        return np.column_stack([order[:-1], order[1:]])
    simplices = triangulation.simplices
    edges = [simplices[:, [0, 1]], simplices[:, [1, 2]], simplices[:, [0, 2]]]
    coplanar = triangulation.coplanar
    if len(coplanar):
        edges.append(coplanar[:, [0, 2]])
    return np.concatenate(edges).astype(np.int64)


def _nearest_labels(fit_points: np.ndarray, fit_labels: np.ndarray, points: np.ndarray,
                    report: _Progress) -> np.ndarray:
    """The label of each point's nearest fitted point (unclustered stays unclustered)."""
    from sklearn.neighbors import KDTree

    tree = KDTree(fit_points)
    out = np.empty(len(points), dtype=np.int64)
    for low in range(0, len(points), _CHUNK):
        high = min(len(points), low + _CHUNK)
        index = tree.query(points[low:high], k=1, return_distance=False)[:, 0]
        out[low:high] = fit_labels[index]
        report(high / len(points))
    return out


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber cluster ids 0.. from the largest cluster down (ties: the earliest row)."""
    clustered = labels >= 0
    if not clustered.any():
        return labels
    ids, first, counts = np.unique(labels[clustered], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    mapping = np.empty(ids.max() + 1, dtype=np.int64)
    mapping[ids[order]] = np.arange(len(ids))
    out = labels.copy()
    out[clustered] = mapping[labels[clustered]]
    return out


def _members(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by cluster: ``rows[bounds[c]:bounds[c + 1]]`` are cluster c's rows."""
    k = int(labels.max()) + 1 if len(labels) else 0
    clustered = np.flatnonzero(labels >= 0)
    rows = clustered[np.argsort(labels[clustered], kind="stable")]
    counts = np.bincount(labels[clustered], minlength=k)
    return rows, np.concatenate([[0], np.cumsum(counts)])


def _result(labels, points, min_cluster_size, min_samples, n_sampled, warnings, start,
            report: _Progress | None = None) -> Clustering:
    rows, bounds = _members(labels)
    k = len(bounds) - 1
    centers = np.zeros((k, 2))
    representatives = np.zeros(k, dtype=np.int64)
    for cluster in range(k):
        members = rows[bounds[cluster]:bounds[cluster + 1]]
        where = points[members]
        middle = np.median(where, axis=0)
        best = int(np.argmin(((where - middle) ** 2).sum(axis=1)))
        representatives[cluster] = members[best]
        centers[cluster] = where[best]
    if report is not None:
        report(1.0)
    return Clustering(
        labels=labels, sizes=np.diff(bounds).astype(np.int64), centers=centers,
        representatives=representatives, min_cluster_size=min_cluster_size,
        min_samples=min_samples, n_sampled=n_sampled, warnings=warnings,
        elapsed=time.perf_counter() - start,
    )


# -- label text ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterLabel:
    """What a cluster is called and where its label goes.

    ``text`` is plain text (user data): render it as text, never as HTML. ``row`` is the
    cluster's most central member, whose image stands for an image column's cluster.
    ``share`` is the majority value's fraction of the members (categorical columns only).
    """

    cluster: int
    text: str
    size: int
    x: float
    y: float
    row: int
    share: float | None = None


LABEL_KINDS = ("categorical", "text", "image")


def label_clusters(
    clustering: Clustering,
    values: Sequence[Any] | np.ndarray | pd.Series | None = None,
    kind: str | None = None,
    *,
    random_state: int = 0,
) -> dict[int, ClusterLabel]:
    """Name every cluster, ``-1`` ("unclustered") included when there are such rows.

    Parameters
    ----------
    clustering
        The result of :func:`find_clusters`.
    values
        One value per input row of the column the labels come from (None: clusters are
        called "cluster 0", "cluster 1", ...).
    kind
        ``"categorical"``: the majority value and its share, ``"7 (92%)"``; ``"text"``: the
        top c-TF-IDF terms of the cluster's documents (a seeded sample of at most 2,000 per
        cluster); ``"image"``: the text stays "cluster N" and ``row`` (always the most
        central member) is the image to show.
    random_state
        Seed of the text sample.
    """
    if kind is not None and kind not in LABEL_KINDS:
        raise ValueError(f"kind must be one of {LABEL_KINDS} or None; got {kind!r}")
    if kind not in (None, "image") and values is None:
        raise ValueError(f"kind={kind!r} needs the column's values")
    labels = clustering.labels
    if values is not None and len(values) != len(labels):
        raise ValueError(
            f"values has {len(values):,} entries but the clustering has {len(labels):,} rows"
        )
    k = clustering.n_clusters
    texts = [f"cluster {cluster}" for cluster in range(k)]
    shares: list[float | None] = [None] * k
    if kind == "categorical":
        texts, shares = _majorities(labels, values, k)
    elif kind == "text":
        texts = _top_terms(labels, values, k, random_state)
    out = {
        cluster: ClusterLabel(
            cluster=cluster, text=texts[cluster], size=int(clustering.sizes[cluster]),
            x=float(clustering.centers[cluster, 0]), y=float(clustering.centers[cluster, 1]),
            row=int(clustering.representatives[cluster]), share=shares[cluster],
        )
        for cluster in range(k)
    }
    unclustered = clustering.n_unclustered
    if unclustered:
        out[UNCLUSTERED] = ClusterLabel(UNCLUSTERED, UNCLUSTERED_LABEL, unclustered,
                                        float("nan"), float("nan"), -1)
    return out


def short_text(value: Any, limit: int = _MAX_LABEL_CHARS) -> str:
    """A value as one line of label text, cut to ``limit`` characters with an ellipsis."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        value = int(value)  # label-like floats: 7.0 reads as 7
    text = " ".join(str(value).split())
    # Control and format characters (bidi overrides among them) have no place in a label.
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _majorities(labels: np.ndarray, values: Any, k: int) -> tuple[list[str], list[float | None]]:
    codes, uniques = pd.factorize(pd.Series(np.asarray(values, dtype=object)), sort=False)
    texts: list[str] = []
    shares: list[float | None] = []
    clustered = labels >= 0
    present = clustered & (codes >= 0)
    keys = labels[present] * (len(uniques) + 1) + codes[present]
    found, counts = np.unique(keys, return_counts=True)
    best_count = np.zeros(k, dtype=np.int64)
    best_code = np.full(k, -1, dtype=np.int64)
    cluster_of = found // (len(uniques) + 1)
    code_of = found % (len(uniques) + 1)
    # np.unique sorts keys, so within a cluster codes come in ascending order: a tie goes to
    # the value seen first in the table (factorize numbers values by first appearance).
    for cluster, code, count in zip(cluster_of, code_of, counts):
        if count > best_count[cluster]:
            best_count[cluster], best_code[cluster] = count, code
    sizes = np.bincount(labels[clustered], minlength=k)
    for cluster in range(k):
        if best_code[cluster] < 0:
            texts.append("(empty)")
            shares.append(None)
            continue
        share = best_count[cluster] / sizes[cluster]
        texts.append(f"{short_text(uniques[best_code[cluster]])} ({share:.0%})")
        shares.append(float(share))
    return texts, shares


def _top_terms(labels: np.ndarray, values: Any, k: int, random_state: int) -> list[str]:
    """c-TF-IDF (BERTopic, arXiv 2203.05794): each cluster's words against all clusters'.

    ``tf`` is a term's share of the words of the cluster; ``idf = log(1 + A / f)`` with ``A``
    the average number of words per cluster and ``f`` the term's count over all clusters.
    English stop words and tokens with digits are dropped; a term must occur in two
    documents.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    rows, bounds = _members(labels)
    rng = np.random.default_rng(random_state)
    docs: list[str] = []
    owners: list[int] = []
    cells = np.asarray(values, dtype=object)
    for cluster in range(k):
        members = rows[bounds[cluster]:bounds[cluster + 1]]
        if len(members) > _TEXT_DOCS_PER_CLUSTER:
            members = np.sort(rng.choice(members, _TEXT_DOCS_PER_CLUSTER, replace=False))
        for cell in cells[members]:
            if isinstance(cell, str) and cell.strip():
                docs.append(cell)
                owners.append(cluster)
    fallback = [f"cluster {cluster}" for cluster in range(k)]
    if not docs:
        return fallback
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{2,}\b",
                                 min_df=2 if len(docs) > 1 else 1)
    try:
        counts = vectorizer.fit_transform(docs)
    except ValueError:  # nothing but stop words and numbers
        return fallback
    from scipy import sparse

    owner = np.asarray(owners)
    indicator = sparse.csr_matrix((np.ones(len(owner)), (owner, np.arange(len(owner)))),
                                  shape=(k, len(owner)))
    per_class = np.asarray((indicator @ counts).todense(), dtype=np.float64)
    words = per_class.sum(axis=1, keepdims=True)
    tf = np.divide(per_class, words, out=np.zeros_like(per_class), where=words > 0)
    frequency = per_class.sum(axis=0)
    average = per_class.sum() / max(1, int((words[:, 0] > 0).sum()))
    idf = np.log1p(average / np.maximum(frequency, 1))
    score = tf * idf
    vocabulary = vectorizer.get_feature_names_out()
    texts = []
    for cluster in range(k):
        top = [i for i in np.argsort(-score[cluster], kind="stable")[:_TEXT_TERMS]
               if score[cluster, i] > 0]
        texts.append(short_text(" ".join(vocabulary[i] for i in top)) if top
                     else fallback[cluster])
    return texts
