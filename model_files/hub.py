"""Fetch catalogue files from a Hugging Face hub: resumable, atomic, verified.

Through huggingface_hub's own calls, so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``, proxies
(``HTTPS_PROXY``/``HTTP_PROXY``) and its progress bar behave as everywhere else: `get_hf_file_metadata` (a HEAD
on the resolve URL: size from ``X-Linked-Size``, sha256 from ``X-Linked-Etag``, where to GET from ``Location``)
and `http_get` (the GET, with a ``Range`` header to resume). `hf_hub_download` is not used: its ``local_dir``
mode drops an interrupted transfer (huggingface_hub 1.x downloads into a per-process temporary file and deletes
it on failure) and cannot rename the file to the name the workflows use.

Bytes go to a hidden ``.<name>.<sha256 prefix>.part`` beside the destination; a later run resumes it. Only a
file whose size and sha256 match the hub's is moved (``os.replace``) to its final name, so that name never holds
a partial or corrupt file, and a file already there is replaced only by a verified one.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import PoseTransferError
from .catalogue import HubFile

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 8 << 20


class DownloadError(PoseTransferError):
    """A file could not be fetched; the message names the file, the URL and what to do. `unreachable`: the hub
    itself did not answer (network, proxy), so asking it about other files would only wait again."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Remote:
    """What the hub states about a file."""

    url: str  # resolve URL
    location: str  # where the bytes come from (a CDN after the hub's redirect)
    size: int | None
    sha256: str | None
    commit: str | None


def endpoint() -> str:
    """The hub huggingface_hub talks to (``HF_ENDPOINT``, read when huggingface_hub is imported)."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline() if is_offline else constants.HF_HUB_OFFLINE)


def remote_metadata(source: HubFile, name: str) -> Remote:
    """HEAD the file's resolve URL. Raises `DownloadError` naming `name`, the URL and what to do."""
    from huggingface_hub import get_hf_file_metadata

    url = source.url(endpoint())
    if offline():
        raise DownloadError(f"{name}: HF_HUB_OFFLINE is set, so nothing is fetched from {url}. Unset HF_HUB_OFFLINE "
                            "(or TRANSFORMERS_OFFLINE) to download, or copy the file in by hand.")
    try:
        meta = get_hf_file_metadata(url)
    except Exception as error:  # huggingface_hub raises requests or httpx errors depending on its version
        status = getattr(getattr(error, "response", None), "status_code", None)
        raise DownloadError(_explain(error, name, url), unreachable=status is None) from error
    etag = (meta.etag or "").strip('"').lower()
    return Remote(url, meta.location or url, meta.size, etag if _SHA256.fullmatch(etag) else None, meta.commit_hash)


def _explain(error: Exception, name: str, url: str) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 404:
        return (f"{name}: {url} answered 404: the repository or file is not there (moved or removed). Get the file "
                "by hand from its new home, and please report it so the pack's catalogue can be updated.")
    if status in (401, 403):
        return (f"{name}: {url} answered {status}: this hub wants a login. Run `hf auth login` or set HF_TOKEN, "
                "then run again.")
    if status is not None:
        return f"{name}: {url} answered HTTP {status} ({error}). Try again later."
    if type(error).__name__ == "OfflineModeIsEnabled":
        return f"{name}: HF_HUB_OFFLINE is set, so nothing is fetched from {url}. Unset it to download."
    return (f"{name}: could not reach {url} ({type(error).__name__}: {error}). Check the network connection, the "
            f"proxy settings (HTTPS_PROXY) and HF_ENDPOINT (now {endpoint()}), then run again.")


def part_path(target: str, remote: Remote) -> str:
    """Where the bytes of `remote` collect before they are verified; keyed by the hub's hash so a changed file
    never resumes on stale bytes."""
    key = (remote.sha256 or f"size{remote.size}")[:16]
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{key}.part")


def partial_size(target: str, remote: Remote) -> int:
    path = part_path(target, remote)
    return os.path.getsize(path) if os.path.isfile(path) else 0


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path: str, remote: Remote) -> str | None:
    """None when the file at `path` is the hub's file (size, then sha256); otherwise how it differs."""
    size = os.path.getsize(path)
    if remote.size is not None and size != remote.size:
        return f"{size} bytes, the hub's file has {remote.size}"
    if remote.sha256 and sha256_of(path) != remote.sha256:
        return f"same size but sha256 differs from the hub's {remote.sha256}"
    return None


def fetch(remote: Remote, target: str, name: str) -> None:
    """Download `remote` to `target`: resume a matching part file, check disk space, verify, then move into place.
    Raises `DownloadError`; an interrupted transfer keeps its part file for the next run."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    part = part_path(target, remote)
    for stale in glob.glob(glob.escape(os.path.join(folder, f".{os.path.basename(target)}.")) + "*.part"):
        if stale != part:
            os.remove(stale)  # bytes of a file the hub no longer serves
    done = os.path.getsize(part) if os.path.isfile(part) else 0
    if remote.size is not None and done > remote.size:
        os.remove(part)
        done = 0
    if remote.size is not None:
        free = shutil.disk_usage(folder).free
        if free < remote.size - done:
            raise DownloadError(f"{name}: not enough disk space in {folder} for {remote.url}: "
                                f"{_gb(remote.size - done)} needed, {_gb(free)} free. Free some space or pass "
                                "--models-dir on another disk, then run again.")
    # The hub's own host may need the token; a CDN it redirects to must not get it (as huggingface_hub does).
    same_host = urlsplit(remote.location).netloc == urlsplit(remote.url).netloc
    headers = build_hf_headers() if same_host else {}
    try:
        with open(part, "ab") as handle:
            http_get(remote.location, handle, resume_size=done, headers=headers, expected_size=remote.size,
                     displayed_filename=name)
            handle.flush()
            os.fsync(handle.fileno())
    except Exception as error:
        got = os.path.getsize(part) if os.path.isfile(part) else 0
        if remote.size is not None and got >= remote.size:
            os.remove(part)  # too many bytes: nothing to resume from
            raise DownloadError(f"{name}: {remote.url} sent {got} bytes, the hub stated {remote.size}; the "
                                "download was deleted. Run again.") from error
        raise DownloadError(f"{name}: the transfer from {remote.url} stopped after {got} of {remote.size} bytes "
                            f"({type(error).__name__}: {error}). The part is kept in {part}; run the same command "
                            "again to resume.") from error
    problem = matches(part, remote)
    if problem:
        os.remove(part)
        raise DownloadError(f"{name}: the file downloaded from {remote.url} does not match the hub ({problem}); it "
                            "was deleted. Run again; if it happens again, report it.")
    os.replace(part, target)


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"
