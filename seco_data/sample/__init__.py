"""``seco-data sample``: where (locations), when (seasons), which image (select), the ledger, the run."""

from .run import Report, SourceFactory, finalize, recipe_source, sample

__all__ = ["Report", "SourceFactory", "finalize", "recipe_source", "sample"]
