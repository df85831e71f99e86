"""The t-SNE engine behind :class:`embproj_panel.reducers.TSNE`: openTSNE, step by step.

Private: :mod:`embproj_panel.reducers` is the API. The fit calls openTSNE's building blocks
(``affinity.PerplexityBasedNN``, ``initialization.pca``, ``TSNEEmbedding.optimize``) rather
than ``openTSNE.TSNE`` so that progress is reported and cancel polled every few
iterations.
Rows beyond a sample fit are placed from their nearest sample rows (:func:`place`).

openTSNE behaviour it relies on (the reason for the upper bound in ``pyproject.toml``):
``TSNEEmbedding(..., negative_gradient_method=<callable>, ints_in_interval=)`` (keyword
arguments it forwards to its gradient descent, which calls the callable as it would
``openTSNE.tsne.kl_divergence_fft``, with ``should_eval_error=``), and an exception raised
there propagating out of ``optimize``.
"""

from __future__ import annotations

import numpy as np

from embproj_panel._runtime import n_threads
from embproj_panel._sample_index import SampleIndex, weighted_mean


def fit(X, perplexity, params, metric, gradient, report):
    from openTSNE import TSNEEmbedding, affinity, initialization
    from openTSNE.tsne import kl_divergence_bh, kl_divergence_fft

    seed = params["random_state"]
    n = X.shape[0]
    # Barnes-Hut (below 10,000 rows) runs single-threaded: its iterations are too short
    # to gain from threads, and on a busy 2-core machine two threads made digits 4x slower
    # (4.8 s against 17.7 s). The FFT iterations are long enough to use every core.
    threads = 1 if gradient == "bh" else n_threads()
    report(0.0)
    affinities = affinity.PerplexityBasedNN(
        X, perplexity=perplexity, metric=metric, n_jobs=threads, random_state=seed,
        verbose=False,
    )
    report(0.2)
    start = initialization.pca(X, random_state=seed, verbose=False)
    n_iter = params["n_iter"]
    early = min(250, n_iter // 3)
    every = int(min(25, max(2, 200_000 // max(n, 1))))
    objective = kl_divergence_bh if gradient == "bh" else kl_divergence_fft
    # openTSNE's gradient descent calls the objective once per iteration and once more at
    # the end of each ``optimize`` (two of them here).
    calls, total = [0], n_iter + 2

    def gradient_with_progress(*args, **kwargs):
        # Progress and cancel from inside the objective rather than through openTSNE's
        # callbacks: an iteration with a callback also evaluates the KL divergence
        # (``should_eval_error``), an error nobody here reads. Never asking for it makes
        # each iteration exactly the gradient an ``openTSNE.TSNE`` call computes.
        kwargs["should_eval_error"] = False
        calls[0] += 1
        if calls[0] % every == 0:
            report.check()
            report(0.22 + 0.78 * calls[0] / total)
        return objective(*args, **kwargs)

    embedding = TSNEEmbedding(
        start, affinities, negative_gradient_method=gradient_with_progress, n_jobs=threads,
        ints_in_interval=2, random_state=seed, verbose=False,
    )
    learning_rate = params["learning_rate"]
    embedding.optimize(n_iter=early, exaggeration=params["early_exaggeration"], momentum=0.8,
                       learning_rate=learning_rate, inplace=True)
    embedding.optimize(n_iter=n_iter - early, momentum=0.8, learning_rate=learning_rate,
                       inplace=True)
    return embedding


# Neighbours in the sample whose weighted mean places each other row.
PLACE_NEIGHBOURS = 15


def place(embedding: np.ndarray, index: SampleIndex, X, rows, report) -> np.ndarray:
    """Place ``X[rows]`` at the weighted mean of their approximate nearest sample rows.

    The weights are :func:`embproj_panel._sample_index.neighbour_kernel`'s memberships of
    the ``PLACE_NEIGHBOURS`` nearest (decaying with distance); nothing is optimised after
    that. openTSNE's ``transform`` instead optimises every new row for 250 iterations
    against the fit, which at a million rows costs far more than the fit itself.
    """
    out = np.empty((len(rows), 2), dtype=np.float32)
    for done, positions, indices, weights in index.search(X, rows, PLACE_NEIGHBOURS):
        report(done)
        out[positions] = weighted_mean(embedding, indices, weights)
    return out
