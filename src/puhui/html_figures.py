"""Figures for the self-contained HTML reports: a matplotlib figure as base64 PNG."""

from __future__ import annotations

import base64
import io


def new_figure(width: float = 7.0, height: float = 2.8):
    """A figure and axes on the non-interactive backend (reports run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def png_base64(fig) -> str:
    """The figure as a base64 PNG (for ``<img src="data:image/png;base64,...">``); closes it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
