"""The verified downloader against a real HTTP server on 127.0.0.1: match, mismatch, interruption, mirrors."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from sepbench.datasets.base import ChecksumError
from sepbench.datasets.download import DownloadError, PublishedFile, fetch, mirror_list, verify
from tests.datasets.served import listing, serving

BODY = bytes(range(256)) * 1024  # 256 KiB: several read chunks


def spec_of(data: bytes, name: str = "blob.bin", **changes) -> PublishedFile:
    fields = {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(), "size": len(data)}
    return PublishedFile(name, **{**fields, **changes})


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_verified_download(tmp_path: Path) -> None:
    said: list[str] = []
    with serving({"blob.bin": BODY}) as server:
        url = fetch(spec_of(BODY), tmp_path / "d" / "blob.bin", [server.url], timeout=5, say=said.append)
    assert url == server.url + "blob.bin"
    assert (tmp_path / "d" / "blob.bin").read_bytes() == BODY
    assert listing(tmp_path) == ["d/blob.bin"]  # no temp file left beside it
    assert len(said) == 1 and "blob.bin" in said[0] and str(tmp_path / "d") in said[0]
    verify(tmp_path / "d" / "blob.bin", spec_of(BODY))


def test_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    wrong = spec_of(BODY, sha256="ab" * 32, size=None)
    with serving({"blob.bin": BODY}) as server, pytest.raises(ChecksumError) as info:
        fetch(wrong, tmp_path / "blob.bin", [server.url], timeout=5, say=lambda _: None)
    assert "SHA-256 " + hashlib.sha256(BODY).hexdigest()[:16] in str(info.value)
    assert "nothing was kept" in str(info.value) and "\n" not in str(info.value)
    assert listing(tmp_path) == []


def test_md5_is_checked_too(tmp_path: Path) -> None:
    with serving({"blob.bin": BODY}) as server, pytest.raises(ChecksumError, match="MD5"):
        fetch(spec_of(BODY, md5="0" * 32), tmp_path / "blob.bin", [server.url], timeout=5, say=lambda _: None)
    assert listing(tmp_path) == []


def test_announced_size_differs_from_the_published_one(tmp_path: Path) -> None:
    with serving({"blob.bin": BODY}) as server, pytest.raises(ChecksumError, match="serves 262144 bytes"):
        fetch(spec_of(BODY, size=1000), tmp_path / "blob.bin", [server.url], timeout=5, say=lambda _: None)
    assert listing(tmp_path) == []


def test_interrupted_transfer_leaves_nothing_and_says_so(tmp_path: Path) -> None:
    with serving({"blob.bin": BODY}) as server:
        server.truncate.add("blob.bin")
        with pytest.raises(DownloadError) as info:
            fetch(spec_of(BODY, size=None), tmp_path / "blob.bin", [server.url], timeout=5, say=lambda _: None)
    message = str(info.value)
    assert f"interrupted after {len(BODY) // 2} of {len(BODY)} bytes" in message and "\n" not in message
    assert listing(tmp_path) == []


def test_mirrors_are_tried_in_order(tmp_path: Path) -> None:
    with serving({"blob.bin": BODY}) as broken, serving({"blob.bin": BODY}) as good:
        broken.truncate.add("blob.bin")
        mirrors = [closed_port_url(), good.url + "missing/", broken.url, good.url]
        url = fetch(spec_of(BODY), tmp_path / "blob.bin", mirrors, timeout=5, say=lambda _: None)
        assert url == good.url + "blob.bin"
        assert broken.requests == ["/blob.bin"] and good.requests == ["/missing/blob.bin", "/blob.bin"]
    assert (tmp_path / "blob.bin").read_bytes() == BODY and listing(tmp_path) == ["blob.bin"]


def test_no_mirror_delivers(tmp_path: Path) -> None:
    dead = closed_port_url()
    with serving({}) as server, pytest.raises(DownloadError) as info:
        fetch(spec_of(BODY), tmp_path / "blob.bin", [dead, server.url], timeout=5, say=lambda _: None)
    assert f"{dead}blob.bin" in str(info.value) and "HTTP 404" in str(info.value)
    assert listing(tmp_path) == []


def test_a_bad_mirror_does_not_hide_a_good_one(tmp_path: Path) -> None:
    other = b"other bytes" * 100
    with serving({"blob.bin": other}) as liar, serving({"blob.bin": BODY}) as good:
        fetch(spec_of(BODY, size=None), tmp_path / "blob.bin", [liar.url, good.url], timeout=5, say=lambda _: None)
    assert (tmp_path / "blob.bin").read_bytes() == BODY


def test_verify_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(BODY[:-1])
    with pytest.raises(ChecksumError, match=f"{path}: not the published blob.bin .262143 bytes, expected 262144"):
        verify(path, spec_of(BODY))


def test_mirror_list_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_TEST_URL", raising=False)
    assert mirror_list("BENCH_TEST_URL", ("http://a/",)) == ["http://a/"]
    monkeypatch.setenv("BENCH_TEST_URL", "http://b/, http://c/")
    assert mirror_list("BENCH_TEST_URL", ("http://a/",)) == ["http://b/", "http://c/"]
    assert mirror_list("BENCH_TEST_URL", ("http://a/",), base_url="http://d/") == ["http://d/"]


def test_published_file_needs_real_checksums() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        PublishedFile("x.gz", "abc")
