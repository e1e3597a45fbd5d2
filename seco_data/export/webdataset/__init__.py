"""WebDataset shards: a catalog packed into tar shards, one sample per location."""

from .export import MANIFEST, ExportReport, ShardInfo, ShardOptions, export_webdataset

__all__ = ["MANIFEST", "ExportReport", "ShardInfo", "ShardOptions", "export_webdataset"]
