"""seco_train: Seasonal Contrast pre-training and evaluations (needs the ``train`` extra: torch)."""

__version__ = "0.1.0"
