"""The C-STORE and C-ECHO SCP: every instance is on disk and in the database before "Success".

Status codes (PS3.4 Annex B.2.3 and PS3.7 Annex C):

======  ===============================================================
0x0000  Success: the file is fsynced and its row committed
0xA700  Refused, out of resources: the disk is below the free-space floor or a write failed
0xA900  Error, data set does not match SOP class: the identifying UIDs are missing or invalid
0xC210  Error, cannot understand: the data set could not be decoded; its bytes are quarantined
0xC211  Error, cannot understand: the database could not record the instance
======  ===============================================================
"""
from __future__ import annotations

import errno
import logging
import threading

from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from inference.anatomy import is_radiograph, not_radiograph_reason
from listener.settings import DicomSettings
from storage.archive import Archive, ArchiveError
from storage.models import AuditEvent
from storage.repository import ReceivedInstance, audit, is_own_series, record_instance

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC210
CANNOT_RECORD = 0xC211

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]

OWN_MANUFACTURER = "pedfrac"


class StoreSCP:
    """The receiving side of the service.

    Parameters
    ----------
    settings
        Our AE title, address, port and calling AE allow-list.
    sessions
        Session factory of the service database.
    archive
        Where received files are written.
    min_free_bytes
        Free space the archive keeps; below it every C-STORE is answered 0xA700.
    """

    def __init__(self, settings: DicomSettings, sessions: sessionmaker[Session], archive: Archive, *,
                 min_free_bytes: int) -> None:
        self.settings = settings
        self.sessions = sessions
        self.archive = archive
        self.min_free_bytes = min_free_bytes
        self.quarantine = archive.root.parent / "quarantine"
        self._server = None
        self._lock = threading.Lock()

    def build_ae(self) -> AE:
        ae = AE(ae_title=self.settings.ae_title)
        ae.maximum_associations = self.settings.max_associations
        ae.maximum_pdu_size = self.settings.maximum_pdu_size
        ae.network_timeout = self.settings.network_timeout
        ae.require_calling_aet = list(self.settings.allowed_calling_ae_titles)

        ae.add_supported_context(Verification)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        return ae

    def start(self) -> None:
        """Start listening in background threads; returns once the socket is bound."""
        handlers = [
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_REJECTED, self.handle_rejected),
        ]
        self._server = self.build_ae().start_server(
            (self.settings.bind, self.settings.port), block=False, evt_handlers=handlers
        )
        if not self.settings.allowed_calling_ae_titles:
            logger.warning("no calling AE allow-list is set: any calling AE title may store")
        logger.info("SCP %s listening on %s:%d", self.settings.ae_title, self.settings.bind, self.port)

    @property
    def port(self) -> int:
        if self._server is None:
            return self.settings.port
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            logger.info("SCP %s stopped", self.settings.ae_title)

    def handle_echo(self, event: Event) -> int:
        logger.info("C-ECHO from %s", event.assoc.requestor.ae_title)
        return SUCCESS

    def handle_rejected(self, event: Event) -> None:
        requestor = event.assoc.requestor
        logger.warning("association from %s (%s) rejected: calling AE title not allowed",
                       requestor.ae_title, requestor.address)
        with self.sessions.begin() as session:
            audit(session, AuditEvent.REJECTED, peer=requestor.ae_title,
                  detail=f"association from {requestor.address} rejected: calling AE title not allowed")

    def handle_store(self, event: Event) -> int:
        """Store one instance durably and record it; never raises, every failure is a status."""
        calling = event.assoc.requestor.ae_title

        try:
            encoded = event.encoded_dataset()
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            identifiers = _identifiers(dataset)
        except _MissingUID as error:
            logger.error("C-STORE from %s rejected: %s", calling, error)
            return DATASET_DOES_NOT_MATCH_SOP_CLASS
        except Exception as error:  # noqa: BLE001 - any decoding failure becomes a status
            self._quarantine(event, calling, error)
            return CANNOT_UNDERSTAND

        study_uid, series_uid, sop_uid = identifiers
        if self.archive.free_bytes() < self.min_free_bytes:
            logger.error("C-STORE of %s refused: archive has less than %d bytes free", sop_uid, self.min_free_bytes)
            return OUT_OF_RESOURCES

        try:
            return self._store(dataset, encoded, calling, study_uid, series_uid, sop_uid)
        except (ArchiveError, OSError) as error:
            logger.error("C-STORE of %s (study %s) failed to write: %s", sop_uid, study_uid, error)
            return OUT_OF_RESOURCES if _is_space_error(error) else CANNOT_UNDERSTAND
        except SQLAlchemyError as error:
            logger.error("C-STORE of %s (study %s) failed to record: %s", sop_uid, study_uid, error)
            return CANNOT_RECORD

    def _store(self, dataset: Dataset, encoded: bytes, calling: str, study_uid: str, series_uid: str,
               sop_uid: str) -> int:
        with self.sessions() as session:
            own_output = _is_own_output(dataset) or is_own_series(session, series_uid)
            kind = "returned" if own_output else "received"
            path = self.archive.path_for(kind, study_uid, series_uid, sop_uid)
            digest = self.archive.write(path, encoded)

            received = ReceivedInstance(
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                sop_instance_uid=sop_uid,
                sop_class_uid=str(dataset.SOPClassUID),
                transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
                modality=dataset.get("Modality"),
                path=str(path),
                size=len(encoded),
                sha256=digest,
                calling_ae_title=calling,
                own_output=own_output,
                not_read_reason=None if is_radiograph(dataset) else not_radiograph_reason(dataset),
            )
            record_instance(session, received)
            session.commit()

        note = " (own output, no job)" if own_output else "" if received.starts_job else " (not a radiograph, no job)"
        logger.info("stored %s of series %s, study %s from %s%s", sop_uid, series_uid, study_uid, calling, note)
        return SUCCESS

    def _quarantine(self, event: Event, calling: str, error: Exception) -> None:
        """Keep the undecodable bytes for inspection; the file name carries the request's SOP UID."""
        sop_uid = str(event.request.AffectedSOPInstanceUID or "unknown")
        try:
            raw = event.request.DataSet.getvalue() if event.request.DataSet is not None else b""
            path = self.quarantine / f"{calling.strip() or 'unknown'}-{event.request.MessageID}-{_safe(sop_uid)}.bin"
            self.quarantine.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.archive.write(path, raw)
        except OSError as write_error:
            logger.error("C-STORE of %s from %s undecodable (%s), and quarantine failed: %s",
                         sop_uid, calling, error, write_error)
            return

        logger.error("C-STORE of %s from %s undecodable (%s); bytes kept in %s", sop_uid, calling, error, path)


class _MissingUID(ValueError):
    pass


def _identifiers(dataset: Dataset) -> tuple[str, str, str]:
    values = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(dataset.get(keyword, "") or "").strip()
        if not value:
            raise _MissingUID(f"{keyword} is missing or empty")
        values.append(value)

    if "SOPClassUID" not in dataset:
        raise _MissingUID("SOPClassUID (0008,0016) is missing")
    return values[0], values[1], values[2]


def _is_own_output(dataset: Dataset) -> bool:
    return str(dataset.get("Manufacturer", "")).strip() == OWN_MANUFACTURER


def _is_space_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _safe(text: str) -> str:
    return "".join(character if character.isalnum() or character in ".-" else "_" for character in text)[:64]
