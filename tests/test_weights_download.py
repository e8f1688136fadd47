"""Weights resolution and download, against a real HTTP server on 127.0.0.1."""
import dataclasses
import hashlib
import http.server
import subprocess
import threading

import pytest

from microscope.errors import UsageError
from microscope.models import inceptionv1_caffe
from microscope.data.cache import cache_dir
from microscope.network.weights import is_cached, resolve_weights

GOOD = bytes(range(256)) * 4000  # ~1 MB: more than one read chunk
SHA1 = hashlib.sha1(GOOD).hexdigest()
SHA256 = hashlib.sha256(GOOD).hexdigest()
GIT_BLOB = hashlib.sha1(b"blob %d\0" % len(GOOD) + GOOD).hexdigest()  # what `git hash-object` prints


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path == "/missing":
            self.send_error(404)
            return
        body = {"/good": GOOD, "/wrong": GOOD[::-1]}.get(self.path)
        if self.path == "/cut":  # promise the whole file, send a tenth, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD[: len(GOOD) // 10])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def spec_at(server, path, **checksums):
    checksums = checksums or {"sha1": SHA1}
    weights = dataclasses.replace(
        inceptionv1_caffe.SPEC.weights, url=f"http://127.0.0.1:{server.server_port}{path}",
        filename="test.bin", **{"sha1": None, "sha256": None, "git_blob": None, **checksums},
    )
    return dataclasses.replace(inceptionv1_caffe.SPEC, weights=weights)


def assert_one_line_naming_url(error, spec):
    message = str(error.value)
    assert "\n" not in message
    assert spec.weights.url in message and "--weights PATH" in message


def test_cache_dir_follows_environment(cache):
    assert cache_dir() == cache


@pytest.mark.parametrize("checksums", [{"sha1": SHA1}, {"sha256": SHA256}, {"sha256": SHA256[:8]},
                                       {"git_blob": GIT_BLOB}])
def test_download_checks_and_caches(server, cache, checksums):
    spec = spec_at(server, "/good", **checksums)
    assert not is_cached(spec)
    path = resolve_weights(spec, None, progress=False)
    assert path == cache / "test.bin" and path.read_bytes() == GOOD
    assert is_cached(spec)
    assert sorted(p.name for p in cache.iterdir()) == ["test.bin"]  # no temp file left

    hits = len(server.hits)
    assert resolve_weights(spec, None, progress=False) == path
    assert len(server.hits) == hits  # the second call is a cache hit


def test_corrupt_cached_file_is_downloaded_again(server, cache):
    spec = spec_at(server, "/good")
    cache.mkdir()
    (cache / "test.bin").write_bytes(b"not the weights")
    assert not is_cached(spec)
    assert resolve_weights(spec, None, progress=False).read_bytes() == GOOD


def test_wrong_checksum_names_both_digests_and_leaves_nothing(server, cache):
    spec = spec_at(server, "/wrong")
    with pytest.raises(UsageError) as error:
        resolve_weights(spec, None, progress=False)
    assert_one_line_naming_url(error, spec)
    assert SHA1 in str(error.value) and hashlib.sha1(GOOD[::-1]).hexdigest() in str(error.value)
    assert list(cache.iterdir()) == []


def test_interrupted_download_leaves_nothing_and_a_retry_works(server, cache):
    spec = spec_at(server, "/cut")
    with pytest.raises(UsageError) as error:
        resolve_weights(spec, None, progress=False)
    assert_one_line_naming_url(error, spec)
    assert list(cache.iterdir()) == []

    assert resolve_weights(spec_at(server, "/good"), None, progress=False).read_bytes() == GOOD


def test_http_error_is_a_usage_error(server, cache):
    spec = spec_at(server, "/missing")
    with pytest.raises(UsageError, match="HTTP 404") as error:
        resolve_weights(spec, None, progress=False)
    assert_one_line_naming_url(error, spec)
    assert list(cache.iterdir()) == []


def test_unreachable_server_is_a_usage_error(cache):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    weights = dataclasses.replace(inceptionv1_caffe.SPEC.weights, url=f"http://127.0.0.1:{port}/x")
    spec = dataclasses.replace(inceptionv1_caffe.SPEC, weights=weights)
    with pytest.raises(UsageError) as error:
        resolve_weights(spec, None, progress=False)
    assert_one_line_naming_url(error, spec)


def test_given_path_is_used_as_is_and_must_exist(tmp_path, cache):
    spec = dataclasses.replace(inceptionv1_caffe.SPEC, weights=None)
    given = tmp_path / "mine.npz"
    given.write_bytes(b"x")
    assert resolve_weights(spec, str(given)) == given
    with pytest.raises(UsageError, match="weights file .*nope.npz not found"):
        resolve_weights(spec, str(tmp_path / "nope.npz"))


def test_model_without_downloadable_weights(cache):
    spec = dataclasses.replace(inceptionv1_caffe.SPEC, weights=None)
    assert not is_cached(spec)
    with pytest.raises(UsageError, match="--weights PATH"):
        resolve_weights(spec, None)


def test_git_blob_id_is_what_git_names_the_file(tmp_path, server, cache):
    copy = tmp_path / "weights.bin"
    copy.write_bytes(GOOD)
    named = subprocess.run(["git", "hash-object", str(copy)], capture_output=True, text=True, check=True)
    assert named.stdout.strip() == GIT_BLOB
    spec = spec_at(server, "/wrong", git_blob=GIT_BLOB)
    with pytest.raises(UsageError) as error:
        resolve_weights(spec, None, progress=False)
    assert_one_line_naming_url(error, spec)
    assert f"git blob id expected {GIT_BLOB}" in str(error.value)
    assert list(cache.iterdir()) == []


def test_weights_without_a_checksum_cannot_be_described():
    with pytest.raises(ValueError, match="no checksum"):
        dataclasses.replace(inceptionv1_caffe.SPEC.weights, sha1=None)
