"""A generated table with known signal, as tables come: text categories, empty cells, an
integer-coded category and an identifier (the table tests and the model tests share it)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mixed_table(n: int = 400, seed: int = 0, missing: float = 0.3) -> pd.DataFrame:
    """A table with known signal: the label is 1 when the city is 'north' or 'east' XOR the
    income (30 % of its cells empty) is above 50; plus a yes/no column, an integer-coded
    category, a noise number and an identifier."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["north", "south", "east", "west"], size=n)
    income = rng.uniform(0, 100, size=n)
    label = ((np.isin(city, ["north", "east"])) ^ (income > 50)).astype(int)
    income_cells = np.where(rng.random(n) < missing, np.nan, income.round(2))
    return pd.DataFrame({
        "id": [f"row-{i:05d}" for i in range(n)],
        "city": city,
        "income": income_cells,
        "member": rng.choice(["yes", "no"], size=n),
        "plan": rng.choice([1, 2, 3], size=n),
        "noise": rng.normal(size=n).round(3),
        "label": np.where(label == 1, "buy", "pass"),
    })
