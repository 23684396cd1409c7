"""The C-STORE and C-ECHO SCP: every instance is on disk and in the database before "Success".

Status codes (PS3.4 Annex B.2.3 and PS3.7 Annex C):

======  ===============================================================
0x0000  Success: the file is fsynced and its row committed
0xA700  Refused, out of resources: the disk is below the free-space floor or a write failed
0xA900  Error, data set does not match SOP class: UIDs missing, invalid or not matching the
        request, or image attributes that contradict the Pixel Data, or (with
        ``dicom.nonconformance = "reject"``) a radiograph whose image attributes break PS3.3;
        the bytes are quarantined
0xC210  Error, cannot understand: the data set could not be decoded; its bytes are quarantined
0xC211  Error, cannot understand: the database could not record the instance
======  ===============================================================

Associations are rejected (PS3.8 9.3.4, A-ASSOCIATE-RJ) for a calling AE title not on the
allow-list, a called AE title other than ours when that check is on, a peer address outside the
allowed networks, and while the archive is below its free-space floor (transient: retry later).
A SOP class we do not accept is rejected per presentation context during negotiation.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

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
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from inference.anatomy import is_radiograph, not_radiograph_reason
from inference.conformance import apply_policy, find_problems
from listener.inspection import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    DatasetProblem,
    check_dataset,
    check_structure,
    describe_error,
)
from listener.scu import disable_nagle
from listener.settings import DicomSettings
from listener.tls import server_context
from storage.archive import Archive, ArchiveError, content_digest, make_private_folder
from storage.models import AuditEvent
from storage.repository import ReceivedInstance, audit, is_own_series, record_instance

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_RECORD = 0xC211

# A-ASSOCIATE-RJ (result, source, reason) triples, PS3.8 9.3.4.
REJECT_PEER_ADDRESS = (0x01, 0x01, 0x01)  # permanent, service user, no reason given
REJECT_LOW_DISK = (0x02, 0x03, 0x02)  # transient, service provider (presentation), local limit exceeded

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


@dataclass(frozen=True)
class _Encoded:
    """The received instance as the two parts of a DICOM file: preamble with file meta, and data set."""

    header: bytes
    body: memoryview

    @property
    def chunks(self) -> tuple[bytes, memoryview]:
        return self.header, self.body

    @property
    def size(self) -> int:
        return len(self.header) + len(self.body)


class StoreSCP:
    """The receiving side of the service.

    Parameters
    ----------
    settings
        Our AE title, address, port, association policy and TLS files.
    sessions
        Session factory of the service database.
    archive
        Where received files are written.
    min_free_bytes
        Free space the archive keeps: below it associations are rejected (transient) and every
        C-STORE that would go below it gets status 0xA700.
    quarantine
        Folder for the bytes of rejected instances; by default ``quarantine`` beside the archive.
    """

    def __init__(self, settings: DicomSettings, sessions: sessionmaker[Session], archive: Archive, *,
                 min_free_bytes: int, quarantine: Path | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.archive = archive
        self.min_free_bytes = min_free_bytes
        self.quarantine = quarantine or archive.root.parent / "quarantine"
        self._networks = [ipaddress.ip_network(text, strict=False) for text in settings.allowed_peer_addresses]
        self._server = None
        # One writer at a time: two associations carrying the same SOP Instance UID must not race
        # on its row. SQLite serialises writers anyway, so this costs no throughput there.
        self._lock = threading.Lock()

    def build_ae(self) -> AE:
        ae = AE(ae_title=self.settings.ae_title)
        ae.maximum_associations = self.settings.max_associations
        ae.maximum_pdu_size = self.settings.maximum_pdu_size
        ae.network_timeout = self.settings.network_timeout
        ae.require_calling_aet = list(self.settings.allowed_calling_ae_titles)
        ae.require_called_aet = self.settings.require_called_ae_title

        ae.add_supported_context(Verification)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        return ae

    def start(self) -> None:
        """Start listening in background threads; returns once the socket is bound."""
        handlers = [
            (evt.EVT_CONN_OPEN, disable_nagle),
            (evt.EVT_REQUESTED, self.handle_requested),
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_REJECTED, self.handle_rejected),
        ]
        self._server = self.build_ae().start_server(
            (self.settings.bind, self.settings.port), block=False, evt_handlers=handlers,
            ssl_context=server_context(self.settings),
        )
        if not self.settings.allowed_calling_ae_titles:
            logger.warning("no calling AE allow-list is set: any calling AE title may store")
        logger.info("SCP %s listening on %s:%d%s", self.settings.ae_title, self.settings.bind, self.port,
                    " with DICOM TLS" if self.settings.tls else "")

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

    def handle_requested(self, event: Event) -> None:
        """Reject an association request from a disallowed address, or while the disk is low."""
        request = event.assoc.requestor.primitive
        calling = str(request.calling_ae_title).strip()
        address = event.assoc.requestor.address

        if not self._address_allowed(address):
            reason, triple = f"peer address {address} is not in dicom.allowed_peer_addresses", REJECT_PEER_ADDRESS
        elif self.archive.free_bytes() < self.min_free_bytes:
            reason = f"archive has less than {self.min_free_bytes} bytes free (storage.min_free_bytes)"
            triple = REJECT_LOW_DISK
        else:
            return

        self._record_rejection(calling, address, reason)
        event.assoc.acse.send_reject(*triple)
        event.assoc.kill()

    def handle_rejected(self, event: Event) -> None:
        """Log and audit an association that pynetdicom rejected for its calling or called AE title."""
        requestor = event.assoc.requestor
        called = str(requestor.primitive.called_ae_title).strip() if requestor.primitive else "?"
        answer = event.assoc.acceptor.primitive
        why = answer.reason_str if answer is not None and answer.result_source else "rejected"
        self._record_rejection(requestor.ae_title, requestor.address, f"{why} (called AE title {called})")

    def _record_rejection(self, calling: str, address: str, reason: str) -> None:
        logger.warning("association from %s (%s) rejected: %s", calling, address, reason)
        try:
            with self.sessions.begin() as session:
                audit(session, AuditEvent.REJECTED, peer=calling, peer_address=address,
                      detail=f"association rejected: {reason}")
        except SQLAlchemyError as error:
            logger.error("association rejection from %s (%s) not audited: %s", calling, address, error)

    def _address_allowed(self, address: str) -> bool:
        if not self._networks:
            return True
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in self._networks)

    def handle_store(self, event: Event) -> int:
        """Store one instance durably and record it; never raises, every failure is a status."""
        calling = event.assoc.requestor.ae_title
        address = event.assoc.requestor.address
        sop_uid = str(event.request.AffectedSOPInstanceUID or "unknown")

        try:
            with event.request.DataSet.getbuffer() as body:
                encoded = _Encoded(b"\x00" * 128 + b"DICM" + encode_file_meta(event.file_meta), body)
                return self._handle_encoded(event, encoded, calling, address)
        except Exception as error:  # noqa: BLE001 - the handler must answer with a status, never raise
            logger.exception("C-STORE of %s from %s failed unexpectedly", sop_uid, calling)
            self._quarantine(event, None, calling, address, CANNOT_UNDERSTAND, describe_error(error))
            return CANNOT_UNDERSTAND

    def _handle_encoded(self, event: Event, encoded: _Encoded, calling: str, address: str) -> int:
        problem = check_structure(encoded.body, event.context.transfer_syntax)
        if problem is None:
            try:
                dataset = event.dataset
                dataset.file_meta = event.file_meta
            except Exception as error:  # noqa: BLE001 - any decoding failure becomes a status
                problem = DatasetProblem(CANNOT_UNDERSTAND, f"data set could not be decoded: {describe_error(error)}")
            else:
                problem = check_dataset(dataset, event.request) or self._check_conformance(dataset)

        if problem is not None:
            self._quarantine(event, encoded, calling, address, problem.status, problem.reason)
            return problem.status

        study_uid, series_uid, sop_uid = (str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID),
                                          str(dataset.SOPInstanceUID))
        if self.archive.free_bytes() - encoded.size < self.min_free_bytes:
            self._refuse_for_space(calling, address, study_uid, sop_uid, encoded.size)
            return OUT_OF_RESOURCES

        try:
            return self._store(dataset, encoded, calling, address)
        except (ArchiveError, OSError) as error:
            logger.error("C-STORE of %s (study %s) failed to write: %s", sop_uid, study_uid, error)
            return OUT_OF_RESOURCES if _is_space_error(error) else CANNOT_UNDERSTAND
        except SQLAlchemyError as error:
            logger.error("C-STORE of %s (study %s) failed to record: %s", sop_uid, study_uid, error)
            return CANNOT_RECORD

    def _check_conformance(self, dataset: Dataset) -> DatasetProblem | None:
        """Apply ``dicom.nonconformance`` to a radiograph's image attributes; return the problem when it rejects."""
        if not is_radiograph(dataset):
            return None
        reason = apply_policy(find_problems(dataset), self.settings.nonconformance,
                              sop_instance_uid=str(dataset.SOPInstanceUID), what="radiograph")
        return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS, reason) if reason else None

    def _store(self, dataset: Dataset, encoded: _Encoded, calling: str, address: str) -> int:
        study_uid, series_uid, sop_uid = (str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID),
                                          str(dataset.SOPInstanceUID))
        digest = content_digest(encoded.chunks)

        with self._lock, self.sessions() as session:
            own_output = _is_own_output(dataset) or is_own_series(session, series_uid)
            kind = "returned" if own_output else "received"
            # Each content of a SOP Instance UID has its own file, so a changed resend never
            # overwrites what an earlier reading used.
            path = self.archive.path_for(kind, study_uid, series_uid, sop_uid, digest=digest)
            if not self.archive.confirm(path):
                self.archive.write(path, encoded.chunks, sha256=digest)

            received = ReceivedInstance(
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                sop_instance_uid=sop_uid,
                sop_class_uid=str(dataset.SOPClassUID),
                transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
                modality=dataset.get("Modality"),
                path=str(path),
                size=encoded.size,
                sha256=digest,
                calling_ae_title=calling,
                own_output=own_output,
                not_read_reason=None if is_radiograph(dataset) else not_radiograph_reason(dataset),
                peer_address=address,
            )
            record_instance(session, received)
            session.commit()

        note = ""
        if own_output:
            note = " (own output, no job)"
        elif not received.starts_job:
            note = " (not a radiograph, no job)"
        logger.info("stored %s of series %s, study %s from %s%s", sop_uid, series_uid, study_uid, calling, note)
        return SUCCESS

    def _refuse_for_space(self, calling: str, address: str, study_uid: str, sop_uid: str, size: int) -> None:
        logger.error("C-STORE of %s (study %s, %d bytes) from %s refused: the archive would fall below %d bytes "
                     "free (storage.min_free_bytes)", sop_uid, study_uid, size, calling, self.min_free_bytes)
        try:
            with self.sessions.begin() as session:
                audit(session, AuditEvent.REFUSED, study_uid=study_uid, sop_uid=sop_uid, peer=calling,
                      peer_address=address, detail=f"0xA700: {size} bytes would exceed the free-space floor")
        except SQLAlchemyError as error:
            logger.error("refusal of %s not audited: %s", sop_uid, error)

    def _quarantine(self, event: Event, encoded: _Encoded | None, calling: str, address: str, status: int,
                    reason: str) -> None:
        """Keep the rejected bytes and a note of why, for inspection, and audit the rejection."""
        sop_uid = str(event.request.AffectedSOPInstanceUID or "unknown")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        stem = self.quarantine / f"{stamp}-{_safe(calling.strip() or 'unknown')}-{event.request.MessageID}-{_safe(sop_uid)}"
        path: Path | None = None
        try:
            if encoded is not None and self.archive.free_bytes() - encoded.size >= self.min_free_bytes:
                make_private_folder(self.quarantine)
                path = stem.parent / f"{stem.name}.dcm"
                self.archive.write(path, encoded.chunks)
                note = {"status": f"0x{status:04X}", "reason": reason, "calling_ae_title": calling,
                        "peer_address": address, "affected_sop_instance_uid": sop_uid}
                self.archive.write(stem.parent / f"{stem.name}.json", json.dumps(note, indent=2).encode())
        except OSError as error:
            logger.error("quarantine of %s from %s failed: %s", sop_uid, calling, error)
            path = None

        kept = f"; bytes kept in {path}" if path else "; bytes not kept"
        logger.error("C-STORE of %s from %s answered 0x%04X: %s%s", sop_uid, calling, status, reason, kept)
        try:
            with self.sessions.begin() as session:
                audit(session, AuditEvent.QUARANTINED, sop_uid=sop_uid[:64], peer=calling, peer_address=address,
                      detail=f"0x{status:04X}: {reason}{kept}")
        except SQLAlchemyError as error:
            logger.error("rejection of %s not audited: %s", sop_uid, error)


def _is_own_output(dataset: Dataset) -> bool:
    return str(dataset.get("Manufacturer", "")).strip() == OWN_MANUFACTURER


def _is_space_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _safe(text: str) -> str:
    return "".join(character if character.isalnum() or character in ".-" else "_" for character in text)[:64]
