"""Figures for the CLI: emotion time courses of a video (the paper's Fig. 3 trailer plots) and read-out fits.

matplotlib is imported lazily and forced to the Agg backend, so that a headless server or CI can
write PNGs and `import emonet_tf` does not pay for matplotlib.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def top_categories(probabilities: np.ndarray, k: int) -> list[int]:
    """Indices of the k categories with the highest mean probability over time, highest first."""
    mean = np.asarray(probabilities, dtype=np.float64).mean(axis=0)
    return list(np.argsort(-mean, kind="stable")[:k])


def plot_emotion_timecourse(
    times_ms: Sequence[float],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: str,
    title: Optional[str] = None,
    highlight: int = 4,
) -> str:
    """Probability of every category over a video's sampled frames; the `highlight` top categories in colour.

    The other categories are drawn thin and grey, so that the figure shows both the dominant emotions
    and how much probability the rest carries (as in Kragel et al. 2019, Fig. 3).
    """
    plt = pyplot()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(times_ms) or probabilities.shape[0] == 0:
        raise ValueError(
            f"need T x C probabilities for T >= 1 timestamps, got {probabilities.shape} for {len(times_ms)} timestamps"
        )
    seconds = np.asarray(times_ms, dtype=np.float64) / 1000.0
    top = top_categories(probabilities, highlight)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for c in range(probabilities.shape[1]):
        if c not in top:
            ax.plot(seconds, probabilities[:, c], color="0.75", linewidth=0.8, zorder=1)
    colours = plt.get_cmap("tab10")
    marker = "o" if len(seconds) < 40 else None
    for rank, c in enumerate(top):
        ax.plot(
            seconds,
            probabilities[:, c],
            color=colours(rank % 10),
            linewidth=2.0,
            marker=marker,
            markersize=3,
            zorder=2,
            label=f"{class_names[c]} (mean {probabilities[:, c].mean():.3f})",
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0.0, max(0.05, float(probabilities.max()) * 1.05))
    if len(seconds) > 1:
        ax.set_xlim(seconds[0], seconds[-1])
    ax.set_title(title or "EmoNet emotion time course")
    # Outside the axes, so that it never hides a curve.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_readout_fit(
    observed: Sequence[float], predicted: Sequence[float], path: str, name: str, r: float, error: float
) -> str:
    """Cross-validated predictions against the ratings (one point per item) with the identity line."""
    plt = pyplot()
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(observed, predicted, s=12, alpha=0.7)
    lo = float(min(observed.min(), predicted.min()))
    hi = float(max(observed.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel(f"{name} (rated)")
    ax.set_ylabel(f"{name} (cross-validated prediction)")
    ax.set_title(f"{name}: r = {r:.3f}, RMSE = {error:.3f}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def is_png(path: str) -> bool:
    """True when the file starts with the PNG signature."""
    with open(path, "rb") as f:
        return f.read(8) == PNG_SIGNATURE
