"""Make W&B files with the real ``wandb`` package, offline, for the tests that read them.

Run as a script in a subprocess (``python tests/_wandb_files.py OUT``) so that wandb's
environment, its service process and its import-time warnings stay out of the test process.
It writes, under ``OUT``:

``wandb/offline-run-*/``  an offline run that logs the seed's two examples (``embeddings`` at
                          step 0, ``digits`` with image cells at step 1), ``big`` (12,000 rows
                          with a 256-d vector) at step 2 and ``embeddings`` again (2 rows) at 3;
``artifact/``             a ``run_table`` artifact made with ``wandb.Artifact`` and copied entry
                          by entry from the staging copies wandb made (its ``local_path``), as a
                          download would lay it out: ``digits.table.json``, ``media/images``,
                          ``media/serialized_data``;
``expected.npz``          what was logged, to compare against.

:func:`make` is cached per folder, so test modules that share it make the files once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ARTIFACT_ROWS = 300  # digits rows in the artifact (each image costs wandb a file)
BIG_ROWS = 12_000
BIG_DIM = 256


def make(out: Path) -> Path:
    """Make the files under ``out`` (once; later calls return at once)."""
    done = out / "expected.npz"
    if not done.exists():
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ}
        env["WANDB_DIR"] = str(out)  # runs go to out/wandb/
        for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
            env[name] = str(out / "wandb-home" / name.lower())
        env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true",
                   WANDB_CONSOLE="off", WANDB_ERROR_REPORTING="false")
        subprocess.run([sys.executable, __file__, str(out)], env=env, check=True,
                       capture_output=True, timeout=300)
    return out


def _generate(out: Path) -> None:
    import numpy as np
    import wandb
    from sklearn.datasets import load_digits

    for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        os.makedirs(os.environ[name], exist_ok=True)
    digits = load_digits()
    pixels = (digits.images * 15).astype(np.uint8)  # 0..16 -> 0..240: visible, not wrapped
    targets = [str(t) for t in digits.target]
    rng = np.random.default_rng(0)
    # A 256-d embedding that keeps the digits apart (a random linear map of the pixels), so
    # the projection of the artifact shows the digits' clusters.
    emb256 = (digits.data[:ARTIFACT_ROWS] @ rng.standard_normal((64, BIG_DIM))).astype(np.float32)
    emb8 = rng.standard_normal((ARTIFACT_ROWS, 8))
    big = rng.standard_normal((BIG_ROWS, BIG_DIM)).astype(np.float32)
    pixel_names = [f"pixel_{i}_{j}" for i in range(8) for j in range(8)]

    def digits_rows(n: int, extra: bool) -> tuple[list[str], list[list]]:
        columns = ["image", "target", *pixel_names] + (["emb256", "emb8", "tags"] if extra else [])
        rows = []
        for i in range(n):
            row = [wandb.Image(pixels[i], caption=f"digit {targets[i]}"), targets[i],
                   *digits.data[i].tolist()]
            if extra:
                row += [emb256[i], emb8[i], [i, i + 1]]
            rows.append(row)
        return columns, rows

    # The artifact first: a table already logged to a run becomes a reference in an artifact.
    columns, rows = digits_rows(ARTIFACT_ROWS, extra=True)
    artifact = wandb.Artifact("t", type="run_table")
    artifact.add(wandb.Table(columns=columns, data=rows), "digits")
    for path, entry in artifact.manifest.entries.items():
        target = out / "artifact" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(entry.local_path, target)

    run = wandb.init(project="embedding_tutorial")
    hello = [[0.2, 0.4, 0.1, 0.7, 0.5], [0.3, 0.1, 0.9, 0.2, 0.7], [0.4, 0.5, 0.2, 0.2, 0.1]]
    run.log({"embeddings": wandb.Table(columns=["D1", "D2", "D3", "D4", "D5"], data=hello)})
    columns, rows = digits_rows(len(targets), extra=False)
    run.log({"digits": wandb.Table(columns=columns, data=rows)})
    run.log({"big": wandb.Table(columns=["id", "label", "vec"],
                                data=[[i, f"c{i % 5}", big[i]] for i in range(BIG_ROWS)])})
    run.log({"embeddings": wandb.Table(columns=["D1", "D2", "D3", "D4", "D5"], data=hello[:2])})
    run.finish()
    np.savez(out / "expected.npz", pixels=pixels, data=digits.data, targets=np.array(targets),
             emb256=emb256, emb8=emb8, big=big, hello=np.array(hello))


if __name__ == "__main__":
    _generate(Path(sys.argv[1]))
