"""A loopback Sentinel Hub: OAuth token endpoint, Catalog API search and Process API, real wire format.

Scenes exist everywhere, one every ``cadence_days`` from ``epoch`` at 10:30:21 UTC (scene ``k``);
``script(k) -> (scene cloud %, CLM fraction, no-data fraction)`` decides what each one looks like.
Pixels are a pure function of (absolute position, resolution, band, k): :func:`dn` gives the tests
the values served. No-data covers the top rows (fraction of the height), CLM the left columns (a
fraction of the width) of the valid rows. Every catalog and process request is parsed and recorded
in :attr:`SentinelHubServer.searches` / :attr:`SentinelHubServer.processes`.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import tarfile
import threading
import time

import numpy as np

from .base import LoopbackServer, Request, Response

ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
L2A_ONLY = ("SCL", "CLD", "SNW")
TOKEN_PATH = "/oauth/token"
SCENE_TIME = dt.time(10, 30, 21)


def default_script(k: int) -> tuple[float, float, float]:
    """Cycle: too cloudy scene, cloudy patch, partial coverage, clean; every 11th a cloud-free
    looking scene with no data at all over the patch."""
    if k % 11 == 0:
        return 2.0, 0.0, 1.0
    return [(55.0, 0.0, 0.0), (6.0, 0.5, 0.0), (9.0, 0.0, 0.25), (12.0, 0.0, 0.0)][k % 4]


def dn(x0: int, y0: int, res: int, shape: tuple[int, int], band: str, k: int) -> np.ndarray:
    """The DN served for ``band`` of scene ``k`` on a grid with upper-left (x0, y0) (before no-data)."""
    h, w = shape
    cols = x0 // 10 + np.arange(w, dtype=np.int64) * (res // 10)
    rows = -(y0 // 10) + np.arange(h, dtype=np.int64) * (res // 10)
    v = (3 * cols[None, :] + 7 * rows[:, None] + 131 * ALL_BANDS.index(band) + 17 * k) % 9973 + 1
    return v.astype(np.uint16)


def masks(shape: tuple[int, int], clm_fraction: float, nodata_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(CLM, dataMask) uint8: no-data on the top rows, cloud on the left columns of the valid rows."""
    h, w = shape
    data = np.ones(shape, np.uint8)
    data[: round(nodata_fraction * h)] = 0
    clm = np.zeros(shape, np.uint8)
    clm[:, : round(clm_fraction * w)] = 1
    clm[data == 0] = 255
    return clm, data


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def geotiff(arr: np.ndarray, epsg: int, left: float, top: float, resx: float, resy: float) -> bytes:
    from affine import Affine
    from rasterio.io import MemoryFile

    n, h, w = arr.shape
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=n, dtype=arr.dtype.name, crs=f"EPSG:{epsg}",
                      transform=Affine(resx, 0.0, left, 0.0, -resy, top)) as ds:
            ds.write(arr)
        return mem.read()


class SentinelHubServer(LoopbackServer):
    def __init__(self, client_id: str = "seco-test-client", client_secret: str = "pa55-W0rd-zz9-plural-z-alpha",
                 *, page_size: int = 2, cadence_days: int = 5, epoch: dt.date = dt.date(2015, 7, 1), script=None,
                 token_path: str = TOKEN_PATH):
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.page_size, self.cadence_days, self.epoch = page_size, cadence_days, epoch
        self.script = script or default_script
        self.tokens: set[str] = set()
        self.searches: list[dict] = []
        self.processes: list[dict] = []
        self.pu_spent = 0.0
        self._state = threading.Lock()
        self.route("POST", re.escape(token_path))(self._token)
        self.route("POST", r"/api/v1/catalog/1\.0\.0/search")(self._search)
        self.route("POST", r"/api/v1/process")(self._process)

    # -- scenes ----------------------------------------------------------------------------------
    def scene_time(self, k: int) -> dt.datetime:
        day = self.epoch + dt.timedelta(days=self.cadence_days * k)
        return dt.datetime.combine(day, SCENE_TIME, tzinfo=dt.timezone.utc)

    def scene_id(self, k: int, tile: str = "T99XXX") -> str:
        t = self.scene_time(k)
        return f"S2{'AB'[k % 2]}_MSIL2A_{t:%Y%m%dT%H%M%S}_N0500_R108_{tile}_{t:%Y%m%dT%H%M%S}"

    def k_of(self, when: dt.datetime) -> float:
        return (when - self.scene_time(0)).total_seconds() / (86400 * self.cadence_days)

    def features(self, start: dt.datetime, end: dt.datetime) -> list[dict]:
        out = []
        k = max(0, int(np.floor(self.k_of(start))))
        while self.scene_time(k) <= end:
            t = self.scene_time(k)
            if t >= start:
                cc = self.script(k)[0]
                props = {"datetime": t.isoformat().replace("+00:00", "Z"), "eo:cloud_cover": cc}
                if k % 3:  # some features lack `platform`: the source reads it from the id
                    props["platform"] = f"sentinel-2{'ab'[k % 2]}"
                out.append({"type": "Feature", "stac_version": "1.0.0", "id": self.scene_id(k), "properties": props})
                if k % 7 == 0:  # a neighbouring tile of the same datatake, cloudier: the same mosaic
                    t2 = t + dt.timedelta(seconds=5)
                    out.append({"type": "Feature", "stac_version": "1.0.0", "id": self.scene_id(k, "T99XXY"),
                                "properties": {**props, "datetime": t2.isoformat().replace("+00:00", "Z"),
                                               "eo:cloud_cover": min(100.0, cc + 30)}})
            k += 1
        return out

    # -- auth ------------------------------------------------------------------------------------
    def _token(self, req: Request, m) -> Response:
        form = req.form()
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Response.json({"error": "unauthorized_client",
                                  "error_description": "Invalid client or Invalid client credentials"}, 401)
        now = int(time.time())
        with self._state:
            jti = len(self.tokens)
            token = ".".join([_b64({"alg": "RS256", "typ": "JWT", "kid": "test"}),
                              _b64({"azp": self.client_id, "exp": now + 3600, "iat": now, "jti": jti,
                                    "sub": "00000000-0000-0000-0000-000000000000"}),
                              base64.urlsafe_b64encode(b"not-a-signature").rstrip(b"=").decode()])
            self.tokens.add(token)
        return Response.json({"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                              "not-before-policy": 0, "scope": "email profile"})

    def revoke_tokens(self) -> None:
        with self._state:
            self.tokens.clear()

    def _authorized(self, req: Request) -> bool:
        auth = next((v for k, v in req.headers.items() if k.lower() == "authorization"), "")
        with self._state:
            return auth.startswith("Bearer ") and auth[7:] in self.tokens

    @staticmethod
    def _unauthorized() -> Response:
        return Response.json({"error": {"status": 401, "reason": "Unauthorized", "message": "Unauthorized",
                                        "code": "COMMON_UNAUTHORIZED"}}, 401)

    @staticmethod
    def _bad(message: str) -> Response:
        return Response.json({"error": {"status": 400, "reason": "Bad Request", "message": message,
                                        "code": "COMMON_BAD_PAYLOAD"}}, 400)

    # -- catalog ---------------------------------------------------------------------------------
    def _search(self, req: Request, m) -> Response:
        if not self._authorized(req):
            return self._unauthorized()
        body = req.json()
        with self._state:
            self.searches.append(body)
        try:
            start, end = (dt.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in body["datetime"].split("/"))
            assert len(body["bbox"]) == 4 and body["collections"]
        except (KeyError, ValueError, AssertionError, AttributeError):
            return self._bad("Invalid request: datetime, bbox and collections are required")
        feats = self.features(start, end)
        flt = body.get("filter")
        if flt:
            fm = re.fullmatch(r"\s*eo:cloud_cover\s*(<=|<)\s*([\d.]+)\s*", flt)
            if not fm:
                return self._bad(f"Cannot parse filter {flt!r}")
            lim = float(fm.group(2))
            feats = [f for f in feats if (f["properties"]["eo:cloud_cover"] <= lim if fm.group(1) == "<="
                                          else f["properties"]["eo:cloud_cover"] < lim)]
        offset = int(body.get("next") or 0)
        size = min(int(body.get("limit", 10)), self.page_size)
        page = feats[offset: offset + size]
        ctx = {"limit": size, "returned": len(page)}
        if offset + size < len(feats):
            ctx["next"] = offset + size
        return Response.json({"type": "FeatureCollection", "features": page, "links": [], "context": ctx},
                             headers={"Content-Type": "application/geo+json"})

    # -- process ---------------------------------------------------------------------------------
    @staticmethod
    def parse_process(body: dict) -> dict:
        """What a Process request asks for, in plain terms (recorded for the tests)."""
        bounds, data, output = body["input"]["bounds"], body["input"]["data"][0], body["output"]
        crs = bounds["properties"]["crs"]
        script = body["evalscript"]
        inputs = json.loads(re.search(r"input:\s*\[\{bands:\s*(\[[^\]]*\])", script).group(1))
        units = re.search(r'units:\s*"(\w+)"', script).group(1)
        outputs = {i: (int(n), t) for i, n, t in
                   re.findall(r'\{id:\s*"(\w+)",\s*bands:\s*(\d+),\s*sampleType:\s*"(\w+)"\}', script)}
        values = {i: [v.strip().removeprefix("s.") for v in vs.split(",") if v.strip()]
                  for i, vs in re.findall(r"(\w+):\s*\[([^\]]*)\]", script.split("evaluatePixel", 1)[1])}
        tr = data["dataFilter"]["timeRange"]
        return {
            "bbox": bounds["bbox"], "crs": crs, "epsg": int(crs.rsplit("/", 1)[-1]),
            "width": output.get("width"), "height": output.get("height"),
            "resx": output.get("resx"), "resy": output.get("resy"),
            "type": data["type"], "from": tr["from"], "to": tr["to"],
            "mosaicking": data["dataFilter"].get("mosaickingOrder"),
            "responses": [(r["identifier"], r["format"]["type"]) for r in output["responses"]],
            "inputs": inputs, "units": units, "outputs": outputs, "values": values,
        }

    def _process(self, req: Request, m) -> Response:
        if not self._authorized(req):
            return self._unauthorized()
        try:
            p = self.parse_process(req.json())
        except (KeyError, ValueError, AttributeError, TypeError, IndexError) as e:
            return self._bad(f"Invalid request: {e!r}")
        p["accept"] = next((v for k, v in req.headers.items() if k.lower() == "accept"), "")
        with self._state:
            self.processes.append(p)
        allowed = set(ALL_BANDS if p["type"] == "sentinel-2-l1c" else [b for b in ALL_BANDS if b != "B10"] + list(L2A_ONLY))
        allowed |= {"CLM", "CLP", "dataMask"}
        bad = [b for b in p["inputs"] if b not in allowed]
        if bad:
            return self._bad(f"Script failed: band(s) {', '.join(bad)} not available in {p['type']}")
        left, bottom, right, top = p["bbox"]
        if p["width"]:
            w, h = int(p["width"]), int(p["height"])
        else:
            w, h = round((right - left) / p["resx"]), round((top - bottom) / p["resy"])
        resx, resy = (right - left) / w, (top - bottom) / h
        res = int(round(resx))
        t0, t1 = (dt.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in (p["from"], p["to"]))
        ks = [k for k in range(max(0, int(np.floor(self.k_of(t0)))), int(np.floor(self.k_of(t1))) + 1)
              if t0 <= self.scene_time(k) <= t1]
        k = min(ks, key=lambda k: self.script(k)[0]) if ks else None  # leastCC
        cc, clm_f, nodata_f = self.script(k) if k is not None else (100.0, 0.0, 1.0)
        clm, data = masks((h, w), clm_f, nodata_f)
        files = {}
        for ident, _fmt in p["responses"]:
            n, stype = p["outputs"][ident]
            dtype = {"UINT16": np.uint16, "UINT8": np.uint8, "FLOAT32": np.float32}[stype]
            arr = np.zeros((n, h, w), dtype)
            for i, name in enumerate(p["values"][ident]):
                if name == "CLM":
                    arr[i] = clm
                elif name == "dataMask":
                    arr[i] = data
                elif k is not None:
                    arr[i] = np.where(data == 1, dn(int(left), int(top), res, (h, w), name, k), 0)
            files[ident] = geotiff(arr, p["epsg"], left, top, resx, resy)
        nb = sum(len(p["values"][i]) for i, _ in p["responses"])
        pu = round(max(0.005, w * h / 512**2 * max(1.0, nb / 3)), 6)
        with self._state:
            self.pu_spent += pu
        p["scene"] = k
        headers = {"x-processingunits-spent": str(pu)}
        if len(files) == 1:
            return Response(200, next(iter(files.values())), {"Content-Type": "image/tiff", **headers})
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for ident, blob in files.items():
                info = tarfile.TarInfo(f"{ident}.tif")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        return Response(200, buf.getvalue(), {"Content-Type": "application/tar", **headers})
