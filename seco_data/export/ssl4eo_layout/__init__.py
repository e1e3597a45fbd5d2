"""The SSL4EO-S12 folder layout (read by torchgeo's ``SSL4EOS12``)."""

from .export import SPLITS, Ssl4eoLayoutReport, export_ssl4eo_layout, season_folder

__all__ = ["SPLITS", "Ssl4eoLayoutReport", "export_ssl4eo_layout", "season_folder"]
