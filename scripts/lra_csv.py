"""Shared helpers of the plotting/table scripts: read an lra CSV and check its schema."""
import os
import sys

import pandas as pd


def die(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_csv(path, required, kind, text=("params",)):
    """Reads `path` and checks it has every column in `required` (an lra `kind` CSV);
    the columns in `text` are kept as strings."""
    if not os.path.exists(path):
        die(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in text})
    except Exception as exc:  # pandas raises many types for malformed files
        die(f"{path}: cannot parse as CSV ({exc})")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        die(f"{path} is not an lra {kind} CSV: missing column(s) {', '.join(missing)} "
            f"(see results/README.md)")
    if frame.empty:
        die(f"{path}: no rows")
    for column in text:
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


def label(backend, params):
    """`nystrom` + `landmarks=64` -> `nystrom (landmarks=64)`."""
    return backend if not params else f"{backend} ({params.replace(';', ', ')})"


def ensure_dir(path):
    if path:
        os.makedirs(path, exist_ok=True)
