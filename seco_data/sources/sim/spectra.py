"""Spectral library: surface reflectance of the simulator's endmembers in the 13 MSI bands, and the
simple atmosphere that turns surface reflectance (L2A) into top-of-atmosphere reflectance (L1C).

Every pixel is a linear mix of endmembers, so a band is one matrix product and the 20 m / 60 m
bands can be computed from block-averaged mixing weights (exactly the block mean of the 10 m
reflectance).
"""

from __future__ import annotations

import numpy as np

from ...bands import BANDS

BAND_ORDER = tuple(BANDS)  # B01 .. B12 incl. B8A and B10
_B = {b: i for i, b in enumerate(BAND_ORDER)}

ENDMEMBERS = ("water", "turbid_water", "green_leaf", "broadleaf_canopy", "conifer_canopy", "dry_vegetation",
              "soil", "sand", "rock", "urban", "snow", "cloud")
(E_WATER, E_TURBID, E_GREEN, E_BROADLEAF, E_CONIFER, E_DRY, E_SOIL, E_SAND, E_ROCK, E_URBAN, E_SNOW,
 E_CLOUD) = range(len(ENDMEMBERS))

#      B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B10    B11    B12
_SR = np.array([
    [0.050, 0.048, 0.042, 0.024, 0.018, 0.012, 0.010, 0.008, 0.007, 0.005, 0.000, 0.003, 0.002],  # water
    [0.065, 0.072, 0.092, 0.074, 0.062, 0.034, 0.028, 0.022, 0.019, 0.011, 0.000, 0.006, 0.004],  # turbid
    [0.030, 0.035, 0.075, 0.035, 0.105, 0.310, 0.400, 0.420, 0.430, 0.420, 0.000, 0.230, 0.105],  # green
    [0.022, 0.028, 0.058, 0.028, 0.082, 0.250, 0.315, 0.335, 0.345, 0.335, 0.000, 0.170, 0.075],  # broadleaf
    [0.018, 0.022, 0.042, 0.022, 0.060, 0.160, 0.200, 0.212, 0.220, 0.215, 0.000, 0.110, 0.048],  # conifer
    [0.055, 0.070, 0.100, 0.130, 0.160, 0.195, 0.220, 0.240, 0.250, 0.250, 0.000, 0.330, 0.250],  # dry veg
    [0.065, 0.085, 0.125, 0.170, 0.200, 0.220, 0.235, 0.250, 0.258, 0.260, 0.000, 0.320, 0.270],  # soil
    [0.120, 0.160, 0.250, 0.350, 0.390, 0.420, 0.440, 0.460, 0.470, 0.470, 0.000, 0.550, 0.480],  # sand
    [0.100, 0.110, 0.130, 0.150, 0.165, 0.180, 0.190, 0.200, 0.205, 0.205, 0.000, 0.240, 0.210],  # rock
    [0.085, 0.092, 0.110, 0.125, 0.138, 0.150, 0.158, 0.168, 0.172, 0.170, 0.000, 0.200, 0.180],  # urban
    [0.950, 0.950, 0.930, 0.900, 0.880, 0.860, 0.840, 0.800, 0.780, 0.600, 0.000, 0.080, 0.050],  # snow
    [0.600, 0.600, 0.600, 0.600, 0.600, 0.600, 0.600, 0.590, 0.590, 0.480, 0.330, 0.460, 0.330],  # cloud
], dtype=np.float64)

#: L1C path reflectance (aerosol factor 1) and two-way transmittance of the surface signal
_PATH = np.array([0.100, 0.075, 0.045, 0.030, 0.025, 0.020, 0.017, 0.014, 0.013, 0.008, 0.001, 0.004,
                  0.002])
_TRANS = np.array([0.80, 0.84, 0.89, 0.91, 0.92, 0.93, 0.93, 0.93, 0.94, 1.00, 0.012, 0.95, 0.93])

#: sensor noise: DN = sigma0 + rel * DN (standard deviation)
_SIGMA0 = np.array([6.0, 5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 5.0, 4.0, 6.0, 2.0, 4.0, 4.0])
_REL = 0.004

DN_SCALE = 10_000.0


def band_index(names) -> np.ndarray:
    return np.array([_B[b] for b in names], dtype=np.int64)


def dn_matrix(product: str, names, aerosol: float = 1.0, water_vapour: float = 2.0):
    """(matrix (nb, E) float32, offset (nb,) float32): DN = matrix @ weights + offset.

    L2A is surface reflectance (clouds as seen by the correction); L1C adds path reflectance
    (strongest in coastal/blue), attenuates the surface signal, absorbs B09 by water vapour (cm)
    and B10 (cirrus) everywhere but on high clouds.
    """
    idx = band_index(names)
    sr = _SR[:, idx].T.copy()  # (nb, E)
    if product == "L1C":
        trans = _TRANS[idx].copy()
        trans[idx == _B["B09"]] = np.exp(-0.28 * water_vapour)
        path = _PATH[idx] * aerosol
        toa = sr * trans[:, None]
        # clouds sit above most of the water vapour and aerosol: their reflectance is kept, minus
        # the path term that every pixel gets
        toa[:, E_CLOUD] = sr[:, E_CLOUD] + 0.06 - path
        toa[idx == _B["B09"], E_CLOUD] = sr[idx == _B["B09"], E_CLOUD] * 0.85
        offset = path
    else:  # the correction leaves a little water-vapour absorption in B09
        toa = sr.copy()
        toa[idx == _B["B09"], :E_CLOUD] *= np.exp(-0.08 * water_vapour)
        offset = np.zeros(len(idx))
    return (toa * DN_SCALE).astype(np.float32), (offset * DN_SCALE).astype(np.float32)


def noise_sigma(names) -> tuple[np.ndarray, float]:
    """Per-band additive sigma (DN) and the relative part."""
    return _SIGMA0[band_index(names)].astype(np.float32), _REL
