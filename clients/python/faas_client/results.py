"""An experiment's CSV files (``calls.csv``, ``summary.csv``) as typed
rows: a pandas DataFrame when pandas is importable, else a list of dicts.
Either way the results folder comes along (``df.attrs["out"]``,
``rows.out``)."""

import csv
import os

# calls.csv's columns, in the order `faas experiment run` writes them.
CALLS = [
    ("experiment", str),
    ("iteration", int),
    ("function", str),
    ("memory", str),
    ("cpu", str),
    ("payload_id", int),
    ("thread", int),
    ("seq", int),
    ("start_unix_ns", int),
    ("client_ms", float),
    ("connect_ms", float),
    ("function_ms", float),
    ("gateway_ms", float),
    ("cpu_user_ms", float),
    ("cpu_kernel_ms", float),
    ("max_rss_bytes", int),
    ("cold_start", bool),
    ("served_by", str),
    ("status", int),
    ("bytes_in", int),
    ("bytes_out", int),
    ("error", str),
]
CALL_COLUMNS = [name for name, _ in CALLS]

# summary.csv: these columns are text, whole numbers or flags. The rest
# (means, percentiles, intervals: floats), and any column a later `faas`
# adds to either file, are read by their cells (see `auto`).
SUMMARY_TYPES = {
    "experiment": str,
    "function": str,
    "memory": str,
    "cpu": str,
    "payload_id": int,
    "cold_start": bool,
    "n": int,
    "failures": int,
    "rss_max_bytes": int,
    "cold_starts": int,
}

# pandas dtypes that keep every value exact and allow a missing one:
# start_unix_ns does not fit a float, and a call may lack any figure.
PANDAS_TYPES = {int: "Int64", float: "float64", bool: "boolean"}


class Rows(list):
    """The rows as a list of dicts, with the results folder as ``.out``."""

    def __init__(self, rows, out):
        super().__init__(rows)
        self.out = out


def auto(text):
    """A cell of a column this client does not know: a flag, a number or
    text, by what it looks like."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def convert(text, kind):
    """A CSV cell as ``kind``; an empty cell is None."""
    if text == "":
        return None
    if kind is auto:
        return auto(text)
    if kind is bool:
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    return kind(text)


def read(path, types, default=auto):
    """The CSV file at ``path``, each cell converted by its column's type
    (``default`` for columns ``types`` does not name); a DataFrame when
    pandas is importable, else Rows."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        kinds = {name: types.get(name, default) for name in header}
        rows = []
        for number, raw in enumerate(reader, start=2):
            try:
                rows.append({name: convert(raw[name], kinds[name]) for name in header})
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path} line {number}: {e}") from None
    out = os.path.dirname(os.path.abspath(path))
    pandas = _pandas()
    if pandas is None:
        return Rows(rows, out)
    frame = pandas.DataFrame(rows, columns=header)
    for name in header:
        dtype = PANDAS_TYPES.get(kinds[name])
        if dtype:
            frame[name] = frame[name].astype(dtype)
    frame.attrs["out"] = out
    return frame


def calls(out):
    """calls.csv of the results folder ``out``."""
    return read(os.path.join(out, "calls.csv"), dict(CALLS))


def summary(out):
    """summary.csv of the results folder ``out``."""
    return read(os.path.join(out, "summary.csv"), SUMMARY_TYPES)


def folder_of(results):
    """The results folder of a path, a DataFrame or Rows."""
    if isinstance(results, (str, os.PathLike)):
        return os.fspath(results)
    out = getattr(results, "out", None) or getattr(results, "attrs", {}).get("out")
    if not out:
        raise ValueError("expected a results folder, or what run_experiment returned")
    return out


def _pandas():
    try:
        import pandas
    except ImportError:
        return None
    return pandas
