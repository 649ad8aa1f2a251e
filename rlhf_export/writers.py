"""Shard writers (JSON Lines and Parquet) and where finished files go (Django storage).

Byte-identical output on every run: rows arrive in a fixed order, JSON is written by
orjson with keys in schema order, Parquet by pyarrow with fixed options (below) and
row groups of a fixed number of rows that do not depend on how rows were fetched.
Nothing time-dependent is written into any file.

A shard is written under a temporary name and only renamed to its final name
(``data/train-00000-of-00002.parquet``) once every shard is complete; the manifest is
renamed last. On local disk the temporary files sit in a hidden ``.partial-<attempt>``
folder beside the final ones and the rename is ``os.replace`` (atomic); on object
storage (S3) the finished local file is uploaded under its final key, which an object
store only shows once the upload is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from rlhf_export.models import FileFormat

# Fixed writer settings: changing any of them changes the bytes (recorded in the manifest).
PARQUET_OPTIONS: dict = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_version": "1.0",
    "data_page_size": 1 << 20,
    "store_schema": True,
}
ROW_GROUP_ROWS = 5_000  # 20,000 rows of conversational pairs held ~100 MB more at peak
JSONL_BUFFER_BYTES = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WrittenFile:
    split: str
    index: int
    rows: int
    path: Path


class _Shard:
    def __init__(self, path: Path, schema: pa.Schema, file_format: str) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        self.file_format = file_format
        self._buffer: list[dict] = []
        self._jsonl: IO[bytes] | None = None
        self._parquet: pq.ParquetWriter | None = None
        if file_format == FileFormat.JSONL:
            self._jsonl = path.open("wb", buffering=JSONL_BUFFER_BYTES)
        else:
            self._parquet = pq.ParquetWriter(str(path), schema, **PARQUET_OPTIONS)

    def write(self, row: dict) -> None:
        self.rows += 1
        if self._jsonl is not None:
            self._jsonl.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
            return
        self._buffer.append(row)
        if len(self._buffer) >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer and self._parquet is not None:
            # Column by column: several times faster than Table.from_pylist on dict rows.
            rows = self._buffer
            arrays = [pa.array([row.get(f.name) for row in rows], type=f.type) for f in self.schema]
            self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=ROW_GROUP_ROWS)
            self._buffer = []

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
            os.fsync(self._jsonl.fileno())
            self._jsonl.close()
            self._jsonl = None
        if self._parquet is not None:
            self._flush()
            self._parquet.close()
            self._parquet = None
            with self.path.open("rb") as f:
                os.fsync(f.fileno())

    def abort(self) -> None:
        try:
            if self._jsonl is not None:
                self._jsonl.close()
            if self._parquet is not None:
                self._parquet.close()
        except Exception:
            pass
        self._jsonl = self._parquet = None


class DatasetWriter:
    """Rows by split into shards of at most ``rows_per_shard`` rows, in a work folder."""

    def __init__(self, *, schema: pa.Schema, file_format: str, rows_per_shard: int, work_dir: Path) -> None:
        self.schema = schema
        self.file_format = file_format
        self.rows_per_shard = rows_per_shard
        self.work_dir = work_dir
        self._open: dict[str, _Shard] = {}
        self._done: list[WrittenFile] = []
        self._next_index: dict[str, int] = {}
        self.rows: dict[str, int] = {}

    @property
    def extension(self) -> str:
        return "jsonl" if self.file_format == FileFormat.JSONL else "parquet"

    def _new_shard(self, split: str) -> _Shard:
        index = self._next_index.get(split, 0)
        self._next_index[split] = index + 1
        return _Shard(self.work_dir / f"{split}-{index:05d}.{self.extension}.partial", self.schema, self.file_format)

    def write(self, split: str, row: dict) -> None:
        shard = self._open.get(split)
        if shard is None or shard.rows >= self.rows_per_shard:
            if shard is not None:
                self._finish(split, shard)
            shard = self._open[split] = self._new_shard(split)
        shard.write(row)
        self.rows[split] = self.rows.get(split, 0) + 1

    def _finish(self, split: str, shard: _Shard) -> None:
        shard.close()
        self._done.append(WrittenFile(split, self._next_index[split] - 1, shard.rows, shard.path))

    def close(self) -> list[WrittenFile]:
        if not self._open and not self._done:
            # An export with no rows still has a (empty) train file with the schema.
            self._open["train"] = self._new_shard("train")
            self.rows["train"] = 0
        for split, shard in sorted(self._open.items()):
            self._finish(split, shard)
        self._open = {}
        return sorted(self._done, key=lambda f: (f.split != "train", f.split, f.index))

    def abort(self) -> None:
        for shard in self._open.values():
            shard.abort()
        self._open = {}

    def final_name(self, written: WrittenFile) -> str:
        count = self._next_index[written.split]
        return f"data/{written.split}-{written.index:05d}-of-{count:05d}.{self.extension}"


# --- Where finished files go ----------------------------------------------------------------


def export_storage() -> Storage:
    return storages["default"]


def is_local(storage: Storage) -> bool:
    """Files on this machine's disk, renamed in place. (Not just "has path()": Django's
    InMemoryStorage answers path() too, for names only.)"""
    return isinstance(storage, FileSystemStorage)


class Sink:
    """Temporary files in a work folder; ``commit`` puts one under its final name."""

    def __init__(self, *, storage: Storage, prefix: str, attempt: int, job_id: int) -> None:
        self.storage = storage
        self.prefix = prefix.rstrip("/")
        self.local = is_local(storage)
        if self.local:
            self.root: Path | None = Path(storage.path(self.prefix))
            self.work_dir = self.root / f".partial-{attempt}"
        else:
            self.root = None
            self.work_dir = Path(settings.EXPORT_WORK_DIR) / f"job-{job_id}" / f"attempt-{attempt}"

    def storage_name(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def prepare(self) -> None:
        """Throw away what an earlier, interrupted attempt left behind, then make the work folder."""
        # The job's folder holds only this job's files and the job has not succeeded:
        # whatever is there (partial files, or whole files an attempt killed while
        # committing had renamed) goes.
        if self.local:
            assert self.root is not None
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            shutil.rmtree(self.work_dir.parent, ignore_errors=True)
            self._delete_remote(self.prefix)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def _delete_remote(self, folder: str) -> None:
        try:
            dirs, files = self.storage.listdir(folder)
        except (OSError, NotImplementedError):
            return
        for name in files:
            self.storage.delete(f"{folder}/{name}")
        for name in dirs:
            self._delete_remote(f"{folder}/{name}")

    def commit(self, path: Path, name: str) -> str:
        target_name = self.storage_name(name)
        if self.local:
            assert self.root is not None
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)  # atomic: the final name shows a whole file or nothing
            return target_name
        if self.storage.exists(target_name):
            self.storage.delete(target_name)
        with path.open("rb") as f:
            saved = self.storage.save(target_name, File(f, name=os.path.basename(name)))
        if saved != target_name:
            self.storage.delete(saved)
            raise OSError(f"storage saved {target_name!r} as {saved!r}; refusing a renamed export file")
        path.unlink(missing_ok=True)
        return target_name

    def discard(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def remove(self, storage_names: list[str]) -> None:
        """Delete committed files (a job cancelled or failed after some were committed)."""
        for name in storage_names:
            try:
                self.storage.delete(name)
            except OSError:
                pass
        self.discard()
        if self.local and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        elif not self.local:
            shutil.rmtree(self.work_dir.parent, ignore_errors=True)
