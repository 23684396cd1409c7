"""The file archive: received instances and our outputs, written durably under the data folder."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class ArchiveError(Exception):
    """An instance could not be written to the archive."""


def _checked_uid(uid: str, keyword: str) -> str:
    # A UID becomes a path component, so anything but digits and dots is refused.
    if not uid or len(uid) > 64 or not _UID.match(uid):
        raise ArchiveError(f"{keyword} {uid!r} is not a valid DICOM UID")
    return uid


class Archive:
    """Files laid out as ``<root>/<kind>/<study>/<series>/<sop>.dcm``, created owner-only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path_for(self, kind: str, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return (
            self.root
            / kind
            / _checked_uid(study_uid, "StudyInstanceUID")
            / _checked_uid(series_uid, "SeriesInstanceUID")
            / f"{_checked_uid(sop_uid, 'SOPInstanceUID')}.dcm"
        )

    def write(self, path: Path, data: bytes) -> str:
        """Write ``data`` atomically and durably at ``path`` and return its SHA-256.

        The bytes go to a temporary file in the same folder, which is fsynced, renamed over the
        target, and the folder is fsynced, so after return the file survives a crash or power loss.
        """
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

        _fsync_folder(path.parent)
        return hashlib.sha256(data).hexdigest()

    def free_bytes(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
