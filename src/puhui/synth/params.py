"""Reading the synthetic city's parameters and evaluating their age curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from puhui.basis import actuarial_dir, read_toml

PARAMS_FILE = "synth-city.toml"


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    return read_toml(Path(path) if path else actuarial_dir() / "assumptions" / PARAMS_FILE)


def by_max_age(options: list[dict], age: np.ndarray) -> np.ndarray:
    """Value per person from ``[{max_age, value}, ..., {value}]`` (first match wins)."""
    age = np.asarray(age)
    conds = [age <= o["max_age"] for o in options[:-1]]
    return np.select(conds, [o["value"] for o in options[:-1]], default=options[-1]["value"])


def by_band(bands: list[int], values: list[float], age: np.ndarray) -> np.ndarray:
    """Value per person from band upper ages ``bands`` and their ``values``."""
    idx = np.searchsorted(np.asarray(bands), np.asarray(age), side="left")
    return np.asarray(values, dtype="float64")[np.minimum(idx, len(values) - 1)]


def logistic_curve(spec: dict, age: np.ndarray) -> np.ndarray:
    """``floor + (cap - floor) / (1 + exp(-(age - mid) / scale))``."""
    a = np.asarray(age, dtype="float64")
    return spec["floor"] + (spec["cap"] - spec["floor"]) / (
        1 + np.exp(-(a - spec["mid"]) / spec["scale"]))


def weighted_codes(table: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    codes = np.array(list(table.keys()))
    w = np.array(list(table.values()), dtype="float64")
    return codes, w / w.sum()
