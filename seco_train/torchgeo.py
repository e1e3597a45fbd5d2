"""torchgeo routes to seco exports, for any number of locations.

torchgeo's ``SeasonalContrastS2`` and ``SSL4EOS12`` read the SeCo and SSL4EO-S12 folder layouts
(``seco-data export --format seco`` / ``--format ssl4eo``) unchanged, but their lengths are those of
the releases (20,000 or 200,000, and 251,079): a smaller export fails on the first missing folder
(``FileNotFoundError`` from a DataLoader), a larger one is cut short. The classes here are the same
readers whose length is the number of exported location folders, and datamodules that use them::

    from seco_train.torchgeo import SeasonalContrastS2ExportDataModule
    dm = SeasonalContrastS2ExportDataModule(root="exports", version="100k", seasons=2, batch_size=32)

    from seco_train.torchgeo import SSL4EOS12ExportDataModule
    dm = SSL4EOS12ExportDataModule(root="ssl4eo_s12", split="s2a", seasons=2, batch_size=32)

(``root``: the folder holding ``seasonal_contrast_100k`` (or ``_1m``), resp. the ``--out`` of the
ssl4eo export, which holds ``s2c`` or ``s2a``.)
"""

from __future__ import annotations

import os

try:
    from torchgeo.datamodules import SeasonalContrastS2DataModule, SSL4EOS12DataModule
    from torchgeo.datasets import SeasonalContrastS2, SSL4EOS12
except ImportError as e:  # an optional extra
    raise ImportError(f"seco_train.torchgeo needs torchgeo ({e}); install it with: pip install 'seco[torchgeo]'") from e


def _count(folder: str, digits: int) -> int:
    """Location folders ``0..N-1`` (``digits`` wide) in ``folder``: N, checked contiguous."""
    try:
        names = [e.name for e in os.scandir(folder) if e.is_dir() and len(e.name) == digits and e.name.isdigit()]
    except FileNotFoundError:
        return 0
    n = len(names)
    if n and max(int(x) for x in names) != n - 1:
        raise FileNotFoundError(f"{folder}: location folders are not 0..{n - 1} (an unfinished export?)")
    return n


class SeasonalContrastS2Export(SeasonalContrastS2):
    """torchgeo's ``SeasonalContrastS2`` whose length is the number of exported locations."""

    def __len__(self) -> int:
        return _count(os.path.join(self.root, self.metadata[self.version]["directory"]), 6)


class SSL4EOS12Export(SSL4EOS12):
    """torchgeo's ``SSL4EOS12`` whose length is the number of exported locations."""

    def __len__(self) -> int:
        return _count(os.path.join(self.root, self.split), 7)


class SeasonalContrastS2ExportDataModule(SeasonalContrastS2DataModule):
    """torchgeo's SeCo datamodule (same normalisation) over :class:`SeasonalContrastS2Export`."""

    def __init__(self, batch_size: int = 64, num_workers: int = 0, **kwargs) -> None:
        super().__init__(batch_size, num_workers, **kwargs)
        self.dataset_class = SeasonalContrastS2Export

    def setup(self, stage: str) -> None:
        self.dataset = SeasonalContrastS2Export(**self.kwargs)


class SSL4EOS12ExportDataModule(SSL4EOS12DataModule):
    """torchgeo's SSL4EO-S12 datamodule (DN / 10000) over :class:`SSL4EOS12Export`."""

    def __init__(self, batch_size: int = 64, num_workers: int = 0, **kwargs) -> None:
        super().__init__(batch_size, num_workers, **kwargs)
        self.dataset_class = SSL4EOS12Export

    def setup(self, stage: str) -> None:
        self.dataset = SSL4EOS12Export(**self.kwargs)
