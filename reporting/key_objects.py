"""Key Object Selection that flags the radiographs the AI read as positive.

A Key Object Selection Document (PS3.3 A.35.4) with TID 2010 content lets a PACS or viewer show
the flagged images first. Its title is (113000, DCM, "Of Interest") from CID 7010, and its Key
Object Description gives the verdict, the model and the disclaimer. Each positive image's
reference contains the reference to its presentation state, when there is one, in the nested
Referenced SOP Sequence (0008,1199) of the Image Reference Macro (PS3.3 Table C.18.3-1). A
viewer that follows it opens the image with the AI boxes on it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from inference.findings import StudyFinding
from reporting.captions import check_language, disclaimer, for_dicom_text
from reporting.identifiers import (
    KO_SERIES_DESCRIPTION,
    KO_SERIES_NUMBER,
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    algorithm_equipment,
    character_set_for,
    new_uid,
    quiet_person_name_check,
    software_version,
    stable_uid,
)

logger = logging.getLogger(__name__)

DOCUMENT_TITLE: Final = codes.cid7010.OfInterest

_DESCRIPTION: Final = {
    "en": "AI: fracture suspected on {count} of {total} images read, maximum p={probability:.2f}, model {model}.",
    "ko": "AI: 판독한 영상 {total}장 중 {count}장에서 골절 의심, 최대 p={probability:.2f}, 모델 {model}.",
}


def build_key_object_selection(
    sources: Sequence[pydicom.Dataset],
    study: StudyFinding,
    *,
    series_instance_uid: str,
    language: str,
    model_identity: str,
    presentation_states: Mapping[str, Dataset] | None = None,
) -> hd.ko.KeyObjectSelectionDocument:
    """Build a Key Object Selection Document that references every positive image of ``study``.

    Parameters
    ----------
    sources
        Datasets of the images read; those of positive findings are referenced, others ignored.
    study
        The ensemble's result; at least one image must be positive.
    series_instance_uid
        Series Instance UID of the new key object series.
    language
        Language of the Key Object Description, ``"ko"`` or ``"en"``.
    model_identity
        Model name and version, written in the description, the device observer context and
        Contributing Equipment.
    presentation_states
        Presentation states by the SOP Instance UID of the image they annotate; each is
        referenced from its image's IMAGE content item.

    Raises
    ------
    ValueError
        If no image is positive, the source of a positive image is missing, or the language is
        unsupported.
    """
    check_language(language)
    positive = _positive_sources(sources, study)
    states = presentation_states or {}

    description = _description(study, language=language, model_identity=model_identity)
    content = hd.ko.KeyObjectSelection(
        document_title=DOCUMENT_TITLE,
        referenced_objects=positive,
        observer_device_context=_device_observer(model_identity),
        description=description,
    )
    applied = _reference_presentation_states(content, states)

    with quiet_person_name_check():
        document = hd.ko.KeyObjectSelectionDocument(
            evidence=[*positive, *applied],
            content=content,
            series_instance_uid=series_instance_uid,
            series_number=KO_SERIES_NUMBER,
            sop_instance_uid=new_uid(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            contributing_equipment=[algorithm_equipment(model_identity)],
            series_description=KO_SERIES_DESCRIPTION,
            specific_character_set=None,
        )
    _set_equipment_and_charset(document, positive[0], description)

    logger.info(
        "built key object selection %s for study %s: %d positive images flagged",
        document.SOPInstanceUID,
        study.study_instance_uid,
        len(positive),
    )
    return document


def _positive_sources(sources: Sequence[Dataset], study: StudyFinding) -> list[Dataset]:
    positive_uids = [image.sop_instance_uid for image in study.images if image.positive]
    if not positive_uids:
        raise ValueError(f"study {study.study_instance_uid} has no positive image, so there is no key object to flag")

    by_uid = {str(source.SOPInstanceUID): source for source in sources}
    missing = [uid for uid in positive_uids if uid not in by_uid]
    if missing:
        raise ValueError(f"no source dataset was given for the positive images with SOP Instance UIDs {', '.join(missing)}")
    return [by_uid[uid] for uid in positive_uids]


def _reference_presentation_states(content: hd.ko.KeyObjectSelection, states: Mapping[str, Dataset]) -> list[Dataset]:
    """Add to each IMAGE item the reference to its image's presentation state, and return the states referenced."""
    applied = []
    for item in content[0].ContentSequence:
        if item.ValueType != "IMAGE":
            continue

        image_reference = item.ReferencedSOPSequence[0]
        state = states.get(str(image_reference.ReferencedSOPInstanceUID))
        if state is None:
            continue

        state_reference = Dataset()
        state_reference.ReferencedSOPClassUID = state.SOPClassUID
        state_reference.ReferencedSOPInstanceUID = state.SOPInstanceUID
        image_reference.ReferencedSOPSequence = [state_reference]
        applied.append(state)
    return applied


def _description(study: StudyFinding, *, language: str, model_identity: str) -> str:
    count = sum(image.positive for image in study.images)
    summary = _DESCRIPTION[language].format(count=count, total=len(study.images), probability=study.probability,
                                            model=model_identity)
    return for_dicom_text(f"{summary} {disclaimer(language=language)}")


def _device_observer(model_identity: str) -> hd.sr.ObserverContext:
    """Build the device observer context (TID 1002, TID 1004) with a UID fixed per model identity."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=stable_uid(MANUFACTURER, model_identity),
        name=MANUFACTURER_MODEL_NAME,
        manufacturer_name=MANUFACTURER,
        model_name=model_identity,
    )
    return hd.sr.ObserverContext(observer_type=codes.cid270.Device, observer_identifying_attributes=device)


def _set_equipment_and_charset(document: Dataset, source: Dataset, description: str) -> None:
    """Set the General Equipment names and the character set that highdicom's KOS constructor does not take.

    NOTE: highdicom 0.28.2 rejects ['', 'ISO 2022 IR 149'], so Specific Character Set is set here.
    """
    document.ManufacturerModelName = MANUFACTURER_MODEL_NAME
    document.SoftwareVersions = software_version()
    charset = character_set_for(source, [description])
    if charset is not None:
        document.SpecificCharacterSet = charset
