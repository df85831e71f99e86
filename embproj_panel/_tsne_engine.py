"""The t-SNE engine behind :class:`embproj_panel.reducers.TSNE`: openTSNE, step by step.

Private: :mod:`embproj_panel.reducers` is the API. The fit calls openTSNE's building blocks
(``affinity.PerplexityBasedNN``, ``initialization.pca``, ``TSNEEmbedding.optimize``) rather
than ``openTSNE.TSNE`` so that progress is reported and cancel polled between iterations, and
the out-of-sample step re-states ``TSNEEmbedding.transform`` (``prepare_partial`` then
``optimize``) for the same reason.

openTSNE behaviour it relies on (the reason for the upper bound in ``pyproject.toml``):
``TSNEEmbedding(..., ints_in_interval=, callbacks=, callbacks_every_iters=)``,
``optimize(..., propagate_exception=True)`` re-raising a callback's exception, and the
settings ``TSNEEmbedding.transform`` uses internally (re-centring the reference embedding,
``prepare_partial(initialization="median", k=25, perplexity=5)``, 250 iterations at
learning rate 0.1, exaggeration 1.5, ``max_grad_norm=0.25``), copied here.
"""

from __future__ import annotations

import numpy as np

from embproj_panel._runtime import n_threads


def fit(X, perplexity, params, metric, gradient, report):
    from openTSNE import TSNEEmbedding, affinity, initialization

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
    done = [0]

    def callback(iteration, error, embedding):
        del error, embedding
        report.check()
        report(0.22 + 0.78 * (done[0] + iteration) / n_iter)
        return False

    embedding = TSNEEmbedding(
        start, affinities, negative_gradient_method=gradient, n_jobs=threads,
        ints_in_interval=2, random_state=seed, callbacks=[callback],
        callbacks_every_iters=every, verbose=False,
    )
    learning_rate = params["learning_rate"]
    embedding.optimize(n_iter=early, exaggeration=params["early_exaggeration"], momentum=0.8,
                       learning_rate=learning_rate, inplace=True, propagate_exception=True)
    done[0] = early
    embedding.optimize(n_iter=n_iter - early, momentum=0.8, learning_rate=learning_rate,
                       inplace=True, propagate_exception=True)
    return embedding


def transform(embedding, X_new, report) -> np.ndarray:
    """openTSNE's ``TSNEEmbedding.transform``, step by step so that it reports and cancels."""
    every = int(min(25, max(2, 200_000 // max(X_new.shape[0], 1))))
    n_iter = 250

    def callback(iteration, error, new):
        del error, new
        report(0.2 + 0.8 * iteration / n_iter)
        return False

    # transform() centres the reference embedding first; so do we.
    embedding -= (np.max(embedding, axis=0) + np.min(embedding, axis=0)) / 2
    report(0.0)
    partial = embedding.prepare_partial(X_new, initialization="median", k=25, perplexity=5)
    report(0.2)
    partial.optimize(n_iter=n_iter, learning_rate=0.1, exaggeration=1.5, momentum=0.8,
                     max_grad_norm=0.25, max_step_norm=None, inplace=True,
                     propagate_exception=True, callbacks=[callback], callbacks_every_iters=every)
    return np.asarray(partial)
