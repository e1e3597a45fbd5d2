"""The loopback server base itself: routes, recording, faults, ranges."""

import json
import urllib.error
import urllib.request

import pytest

from servers.base import LoopbackServer, Response, file_response


@pytest.fixture()
def server(tmp_path):
    s = LoopbackServer()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)

    @s.route("GET", r"/hello/(\w+)")
    def hello(req, m):
        return Response.json({"hi": m.group(1)})

    @s.route("GET", r"/blob")
    def get_blob(req, m):
        return file_response(blob, req)

    with s:
        yield s


def _get(url, headers=None, timeout=5):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def test_routes_record_and_ranges(server):
    assert json.loads(_get(server.url + "/hello/you")[2]) == {"hi": "you"}
    status, headers, body = _get(server.url + "/blob", {"Range": "bytes=10-19"})
    assert status == 206 and body == bytes(range(10, 20)) and headers["Content-Range"] == "bytes 10-19/1024"
    assert [r.path for r in server.calls("GET")] == ["/hello/you", "/blob"]
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(server.url + "/nope")
    assert e.value.code == 404
    e.value.close()


def test_faults(server):
    server.fault("status", r"/hello", times=2, status=429, retry_after="1500")
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(server.url + "/hello/x")
        assert e.value.code == 429 and e.value.headers["Retry-After"] == "1500"
        e.value.close()
    assert _get(server.url + "/hello/x")[0] == 200  # the burst is over
    server.fault("garbage", r"/hello")
    with pytest.raises(json.JSONDecodeError):
        json.loads(_get(server.url + "/hello/x")[2])
    server.fault("truncate", r"/blob")
    with pytest.raises(Exception):  # IncompleteRead
        _get(server.url + "/blob")
    server.fault("timeout", r"/hello", seconds=1.0)
    with pytest.raises(Exception):  # client timeout
        _get(server.url + "/hello/x", timeout=0.3)
    server.fault("drop", r"/hello")
    with pytest.raises(Exception):
        _get(server.url + "/hello/x")
