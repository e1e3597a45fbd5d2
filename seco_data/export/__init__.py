"""Exports of a catalog: WebDataset shards (:mod:`.webdataset`), the SeCo folder layout
(:mod:`.seco_layout`) and the SSL4EO-S12 layout (:mod:`.ssl4eo_layout`); :mod:`.reader` streams shards back, :mod:`.verify` proves them whole."""

#: export formats -> the options (keyword arguments of their export function) that apply to each
FORMATS: dict[str, tuple[str, ...]] = {
    "webdataset": ("bands", "maxcount", "maxsize", "seed", "seasons", "resample_10m", "prefix", "codec", "dtype"),
    "seco": ("bands", "bits", "compress", "preview"),
    "ssl4eo": ("compress",),
}
