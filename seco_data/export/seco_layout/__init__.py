"""The SeCo folder layout (read by torchgeo's ``SeasonalContrastS2`` and the SeCo reference loaders)."""

from .export import BITS, COMPRESSIONS, SecoLayoutReport, export_seco_layout
from .files import meta_dir, preview_rgb, scene_folders, scene_metadata, seco_band_name, to_uint8

__all__ = ["BITS", "COMPRESSIONS", "SecoLayoutReport", "export_seco_layout", "meta_dir", "preview_rgb",
           "scene_folders", "scene_metadata", "seco_band_name", "to_uint8"]
