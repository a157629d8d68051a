"""Download the nuskybgd auxiliary files into the user cache, verified against a manifest.

The files are the MIT-licensed auxil files of the public nuskybgd repositories (nuskybgd-py and
the IDL nuskybgd). This package ships only their names, sizes and SHA-256 digests
(``manifest.json``); :func:`fetch_auxil` downloads each file, checks size and digest, and only
then moves it into the cache (atomically: an interrupted or corrupt download leaves nothing).

The source can be overridden with ``--base-url`` (CLI), the ``base_url`` argument or
``$NUSKYBGD_AUXIL_URL``; ``file://`` URLs and plain directories work, which is how the tests run
(the test machines have no internet access).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from functools import lru_cache
from pathlib import Path

from ..errors import BadConfigError, BadFileError, NuSkyBgdError
from ..io.fitsutil import atomic_output
from .resolver import cache_dir as default_cache_dir

__all__ = ["DEFAULT_BASE_URL", "URL_ENV", "MANIFEST_PATH", "load_manifest", "sha256_file", "verify_file",
           "fetch_auxil", "file_url"]

#: Where nuskybgd-py keeps its auxil files. Files that only the IDL nuskybgd has (pixmap, detnum,
#: ratios{A,B}.dat, bgdfitparams, polarmodel) come from that repository's auxil directory
#: (``repositories`` in the manifest) unless a base URL is given.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/NuSTAR/nuskybgd-py/master/auxil/"
#: Environment variable giving a base URL (a mirror holding all files side by side).
URL_ENV = "NUSKYBGD_AUXIL_URL"
MANIFEST_PATH = Path(__file__).with_name("manifest.json")

_CHUNK = 1 << 16


@lru_cache(maxsize=None)
def _manifest(path):
    try:
        data = json.loads(Path(path).read_text())
        files = data["files"]
        for name, entry in files.items():
            int(entry["size"])
            bytes.fromhex(entry["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadFileError(f"unreadable auxil manifest ({type(exc).__name__}: {exc})", path=path) from None
    return data


def load_manifest(path=None):
    """The auxil manifest: ``{'repositories': {repo: base_url}, 'files': {name: {sha256, size, repository}}}``."""
    return _manifest(str(path or MANIFEST_PATH))


def sha256_file(path):
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path, name, manifest=None):
    """True if ``path`` has the size and SHA-256 that the manifest records for auxil file ``name``."""
    entry = (manifest or load_manifest())["files"][name]
    path = Path(path)
    try:
        if path.stat().st_size != int(entry["size"]):
            return False
        return sha256_file(path) == entry["sha256"]
    except OSError:
        return False


def _base(base_url):
    """Normalise a base URL: a local directory becomes a file:// URL; a trailing slash is ensured."""
    text = str(base_url).strip()
    if not text:
        raise BadConfigError("empty base URL", field="base_url")
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise BadConfigError(f"base URL {text!r} is neither a URL nor a directory", field="base_url")
        text = path.resolve().as_uri()
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise BadConfigError(f"base URL scheme {scheme!r} not supported (use https://, http:// or file://)",
                             field="base_url")
    return text if text.endswith("/") else text + "/"


def file_url(name, base_url=None, manifest=None):
    """URL from which auxil file ``name`` is downloaded.

    With ``base_url`` (or ``$NUSKYBGD_AUXIL_URL``) every file is ``base_url + name``; otherwise the
    file's repository in the manifest decides.
    """
    manifest = manifest or load_manifest()
    base_url = base_url if base_url is not None else os.environ.get(URL_ENV, "").strip() or None
    if base_url is not None:
        return _base(base_url) + urllib.parse.quote(name)
    repo = manifest["files"][name].get("repository", "nuskybgd-py")
    return manifest.get("repositories", {}).get(repo, DEFAULT_BASE_URL) + urllib.parse.quote(name)


def _download(url, dest, entry, timeout):
    """Stream ``url`` into ``dest`` checking size and digest; raise (dest then discarded) on any problem."""
    size = int(entry["size"])
    digest = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            while True:
                block = resp.read(_CHUNK)
                if not block:
                    break
                got += len(block)
                if got > size:
                    raise BadFileError(f"download larger than the {size} bytes recorded in the manifest", path=url)
                digest.update(block)
                out.write(block)
    except NuSkyBgdError:
        raise
    except urllib.error.HTTPError as exc:
        raise NuSkyBgdError(f"download failed: HTTP {exc.code} {exc.reason}", path=url) from None
    except urllib.error.URLError as exc:
        raise NuSkyBgdError(f"download failed: {exc.reason}", path=url) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise NuSkyBgdError(f"download failed: {type(exc).__name__}: {exc}", path=url) from None
    if got != size:
        raise BadFileError(f"download incomplete: {got} of {size} bytes", path=url)
    if digest.hexdigest() != entry["sha256"]:
        raise BadFileError(f"SHA-256 {digest.hexdigest()} differs from the manifest's {entry['sha256']}; "
                           "file rejected", path=url, field="sha256")


def fetch_auxil(base_url=None, cache_dir=None, names=None, overwrite=False, progress=None, timeout=60.0):
    """Download the auxil files into the cache, verifying each against the manifest.

    Parameters
    ----------
    base_url : str, optional
        Where to download from: ``https://``, ``http://`` or ``file://`` URL of a directory holding
        the files side by side, or a local directory. Default ``$NUSKYBGD_AUXIL_URL``, else each
        file's public repository (:data:`DEFAULT_BASE_URL` for nuskybgd-py, see the manifest).
        The CLI sets it with ``--base-url``.
    cache_dir : str or os.PathLike, optional
        Target directory (created if needed); default :func:`~.resolver.cache_dir`.
    names : iterable of str, optional
        Files to fetch; default all those of the manifest (:data:`~.resolver.AUXIL_FILES`).
    overwrite : bool
        Replace cached files whose digest is wrong (correct ones are always kept).
    progress : callable(name, status, path), optional
        Called after each file with status ``'fetched'`` or ``'present'``.
    timeout : float
        Network timeout in seconds per request.

    Returns
    -------
    dict
        name -> ``'fetched'`` or ``'present'``.

    Raises
    ------
    NuSkyBgdError
        Network failure (the message names the URL).
    BadFileError
        Size or SHA-256 mismatch (nothing is written), or a cached file with a wrong digest and
        ``overwrite`` false.
    """
    manifest = load_manifest()
    if base_url is not None:
        base_url = _base(base_url)  # bad URLs fail before anything is touched
    wanted = list(manifest["files"] if names is None else names)
    for name in wanted:
        if name not in manifest["files"]:
            raise BadConfigError(f"unknown auxil file {name!r}", field="names")
    target = default_cache_dir(cache_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadFileError(f"cannot create the auxil cache ({exc.strerror})", path=target) from None
    status = {}
    for name in wanted:
        entry = manifest["files"][name]
        dest = target / name
        if dest.exists():
            if verify_file(dest, name, manifest):
                status[name] = "present"
                if progress is not None:
                    progress(name, "present", dest)
                continue
            if not overwrite:
                raise BadFileError("cached file differs from the manifest (size or SHA-256); use --overwrite "
                                   "to replace it", path=dest)
        url = file_url(name, base_url, manifest)
        with atomic_output(dest, overwrite=overwrite) as tmp:
            _download(url, tmp, entry, timeout)
        status[name] = "fetched"
        if progress is not None:
            progress(name, "fetched", dest)
    return status
