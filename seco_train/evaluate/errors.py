"""Errors of the benchmark readers (one line and a hint each, like every seco error)."""

from __future__ import annotations

from seco_data.errors import SecoError


class DatasetNotFoundError(SecoError, FileNotFoundError):
    """A benchmark's files are missing: names the file or folder and where to get it."""

    exit_code = 4


class DatasetFormatError(SecoError, ValueError):
    """A benchmark file exists but does not hold what the format says."""

    exit_code = 4
