"""seco_data: collect seasonal Sentinel-2 patches into a STAC catalog (no torch needed)."""

__version__ = "0.1.0"
