"""pandas, pyarrow and DuckDB reading and writing ``tilde://`` URLs through the registered filesystem."""

from __future__ import annotations

from typing import Any

import duckdb
import fsspec
import pandas as pd
import pyarrow.dataset as ds
from fsspec_helpers import commit_count

from tilde.data.fsspec import TildeFileSystem


def _frame(start: int, rows: int = 50) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": range(start, start + rows), "name": [f"row-{i}" for i in range(start, start + rows)]}
    )


def test_pandas_csv_round_trip(repo_path: str, storage_options: dict[str, Any], fs: TildeFileSystem) -> None:
    frame = _frame(0)
    url = f"tilde://{repo_path}/tables/frame.csv"
    frame.to_csv(url, index=False, storage_options=storage_options)
    assert pd.read_csv(url, storage_options=storage_options).equals(frame)
    assert fs.cat_file(url) == frame.to_csv(index=False).encode()


def test_pandas_parquet_round_trip_is_one_commit(
    repo_path: str, storage_options: dict[str, Any], fs: TildeFileSystem
) -> None:
    before = commit_count(fs, repo_path)
    frame = _frame(100)
    url = f"tilde://{repo_path}/tables/frame.parquet"
    frame.to_parquet(url, index=False, storage_options=storage_options)
    assert commit_count(fs, repo_path) == before + 1
    assert pd.read_parquet(url, storage_options=storage_options).equals(frame)


def test_pyarrow_dataset_over_a_prefix_of_parquet_files(repo_path: str, fs: TildeFileSystem) -> None:
    with fs.transaction:
        for part in range(3):
            with fs.open(f"{repo_path}/events/part-{part}.parquet", "wb") as f:
                _frame(part * 10, rows=10).to_parquet(f, index=False)
        fs.pipe_file(f"{repo_path}/other/ignored.txt", b"not a table")
    dataset = ds.dataset(f"{repo_path}/events", filesystem=fs, format="parquet")
    table = dataset.to_table().to_pandas().sort_values("id", ignore_index=True)
    assert table["id"].tolist() == list(range(30))
    assert len(dataset.files) == 3


def test_duckdb_reads_parquet_through_the_registered_filesystem(
    repo_path: str, storage_options: dict[str, Any]
) -> None:
    url = f"tilde://{repo_path}/duck/frame.parquet"
    _frame(0, rows=20).to_parquet(url, index=False, storage_options=storage_options)
    filesystem = fsspec.filesystem("tilde", **storage_options)
    connection = duckdb.connect()
    try:
        connection.register_filesystem(filesystem)
        result = connection.sql(f"SELECT count(*), sum(id) FROM read_parquet('{url}')").fetchall()
    finally:
        connection.close()
    assert result == [(20, sum(range(20)))]
