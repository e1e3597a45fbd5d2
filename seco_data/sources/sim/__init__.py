"""The embedded default source ``sim``: an offline, deterministic Sentinel-2 L1C/L2A simulator.

Modules, in pipeline order: ``noise`` (hash-based value noise and its calibrated CDF), ``tiles``
(tiles, lattices, sun), ``climate`` and ``phenology`` (biomes, cloudiness, seasons), ``cities``
(urban intensity), ``landcover`` (classes at 10 m), ``acquisitions`` (orbits, dates, scene ids),
``clouds`` (cloud / shadow / swath-edge masks), ``spectra`` (endmember reflectance, atmosphere),
``scenes`` (rendering) and ``source`` (the :class:`SimSource` class).
"""

from .landcover import CLASS_NAMES
from .source import SimSource

__all__ = ["SimSource", "CLASS_NAMES"]
