"""TID 1500 Measurement Report of a study's fracture reading, as a Comprehensive 3D SR.

Content tree (PS3.16 TID 1500), built with highdicom's templates:

* Procedure Reported: LOINC "XR Wrist Views" or "XR Elbow Views" for each body part read.
* Image Library (TID 1600): every source image that was read.
* Imaging Measurements: per image a TID 1501 group with fracture present or absent, the
  ensemble probability, the finding site with laterality and Algorithm Identification (TID
  4019). Each detector box gets a TID 1410 group whose region is a closed 5-point POLYLINE
  SCOORD. One more TID 1501 group contains the patient-level result and the maximum probability.
* Qualitative Evaluations: one TEXT item per image that was not analysed, with the reason.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from inference.findings import FAT_PAD, FRACTURE, Box, ImageFinding, SkippedImage, StudyFinding
from reporting.identifiers import (
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    SR_SERIES_DESCRIPTION,
    SR_SERIES_NUMBER,
    new_uid,
    quiet_person_name_check,
    software_version,
    stable_uid,
)

logger = logging.getLogger(__name__)

# Standard codes. SNOMED CT 72704001 is the morphologic abnormality "Fracture". Present and
# Absent are the values of CID 241 "Present-Absent Only" as pydicom 3.0.2 lists them, where
# Absent is SCT 272519000 rather than the SNOMED qualifier 2667000 that HL7 value sets use.
FRACTURE_CONCEPT: Final = Code("72704001", "SCT", "Fracture")
PRESENT: Final = codes.cid241.Present
ABSENT: Final = codes.cid241.Absent
QUALITATIVE_EVALUATIONS: Final = Code("C0034375", "UMLS", "Qualitative Evaluations")

# LOINC radiology codes for the procedures pedfrac reads.
PROCEDURES: Final = {
    "wrist": Code("24619-9", "LN", "XR Wrist Views"),
    "elbow": Code("24676-9", "LN", "XR Elbow Views"),
}
FINDING_SITES: Final = {"wrist": codes.SCT.WristJoint, "elbow": codes.SCT.ElbowJoint}
LATERALITIES: Final = {"R": codes.cid244.Right, "L": codes.cid244.Left, "B": codes.cid244.Bilateral}
VIEWS: Final = {"AP": codes.cid4010.AnteroPosterior, "LAT": codes.cid4010.LateralProjection}

# Private codes, for concepts that no standard code fits. DICOM reserves coding scheme
# designators starting with "99" for private schemes (PS3.3 Section 8, Encoding of Coded Entry
# Data). The SR declares this scheme in its Coding Scheme Identification Sequence (0008,0110).
PRIVATE_SCHEME: Final = "99PEDFRAC"
FRACTURE_PROBABILITY: Final = Code("FRACPROB", PRIVATE_SCHEME, "Fracture probability")
ELBOW_FAT_PAD_SIGN: Final = Code("FATPAD", PRIVATE_SCHEME, "Elevated elbow fat pad")
IMAGE_NOT_ANALYSED: Final = Code("NOTANALYSED", PRIVATE_SCHEME, "Image not analysed")

BOX_FINDINGS: Final = {FRACTURE: FRACTURE_CONCEPT, FAT_PAD: ELBOW_FAT_PAD_SIGN}

# Projection radiography modalities whose TID 1603 descriptors highdicom 0.28.2 builds only
# when Imager Pixel Spacing (0018,1164) is present.
_PROJECTION_MODALITIES: Final = {"CR": codes.cid29.ComputedRadiography, "DX": codes.cid29.DigitalRadiography}
_PIXELS: Final = Code("{pixels}", "UCUM", "Pixels")


def build_structured_report(
    sources: Sequence[pydicom.Dataset],
    study: StudyFinding,
    *,
    series_instance_uid: str,
    model_identity: str,
    algorithm_name: str,
    algorithm_version: str,
) -> hd.sr.Comprehensive3DSR:
    """Build the TID 1500 Measurement Report of ``study`` as a Comprehensive 3D SR.

    Parameters
    ----------
    sources
        Datasets of the images read, one per ``study.images`` entry, in any order. Datasets of
        images that were not read may be included and are ignored. Patient and study
        attributes and Specific Character Set are copied unchanged from the first source
        that was read.
    study
        The ensemble's patient-level result with its image findings and skipped images.
    series_instance_uid
        Series Instance UID of the new SR series.
    model_identity
        Model name and version, recorded as the device observer's model name (TID 1004).
    algorithm_name, algorithm_version
        Algorithm Identification (TID 4019) of every measurement group.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Completion Flag COMPLETE, Verification Flag UNVERIFIED and Preliminary Flag
        PRELIMINARY (PS3.3 C.17.2), in the study of the sources.

    Raises
    ------
    ValueError
        If no image was read, a source is missing or belongs to another study, or a body part
        or box label has no code. A view without a code is left out of the Image Library.
    """
    read_sources = _read_sources(sources, study)

    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version, manufacturer=MANUFACTURER)
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations] = []
    for index, (finding, source) in enumerate(zip(study.images, read_sources), start=1):
        groups.append(_image_group(index, finding, source, _algorithm_with_parameters(finding, algorithm_name, algorithm_version)))
        groups.extend(_box_groups(index, finding, source, algorithm))
    groups.append(_study_group(study, read_sources, algorithm))

    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(algorithm_name, algorithm_version, model_identity),
        procedure_reported=_procedures(study),
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    _insert_image_library(report, study.images, read_sources)
    _append_skipped_images(report, study.skipped)

    document = _document(report, read_sources, series_instance_uid)
    logger.info(
        "built structured report %s for study %s: %d images read, %d skipped, fracture %s",
        document.SOPInstanceUID,
        study.study_instance_uid,
        len(study.images),
        len(study.skipped),
        "present" if study.positive else "absent",
    )
    return document


def _read_sources(sources: Sequence[Dataset], study: StudyFinding) -> list[Dataset]:
    """Return the source dataset of each image finding, in the order of ``study.images``."""
    # NOTE: highdicom's MeasurementReport needs at least one measurement group, so a study in
    # which every image was skipped gets no SR; the caller has to report that another way.
    if not study.images:
        raise ValueError(f"study {study.study_instance_uid} has no image that was read, so there is nothing to report")

    by_uid = {str(source.SOPInstanceUID): source for source in sources}
    missing = [image.sop_instance_uid for image in study.images if image.sop_instance_uid not in by_uid]
    if missing:
        raise ValueError(f"no source dataset was given for the images read with SOP Instance UIDs {', '.join(missing)}")

    read = [by_uid[image.sop_instance_uid] for image in study.images]
    for source in read:
        if source.StudyInstanceUID != study.study_instance_uid:
            raise ValueError(
                f"source {source.SOPInstanceUID} has Study Instance UID (0020,000D) {source.StudyInstanceUID}, "
                f"expected {study.study_instance_uid}"
            )
    return read


def _algorithm_with_parameters(finding: ImageFinding, name: str, version: str) -> hd.sr.AlgorithmIdentification:
    """Build Algorithm Identification (TID 4019) with the decision threshold and ensemble members as parameters."""
    parameters = [
        f"decision threshold {finding.threshold:.3f}",
        f"view {finding.view} from {finding.view_source}",
    ]
    parameters += [
        f"member {member.member} ({member.kind}) probability {member.probability:.3f} weight {member.weight:.3f}"
        for member in finding.members
    ]
    return hd.sr.AlgorithmIdentification(name=name, version=version, parameters=parameters, manufacturer=MANUFACTURER)


def _finding_site(finding: ImageFinding) -> hd.sr.FindingSite:
    """Build the Finding Site (SNOMED CT wrist or elbow joint) with Laterality from CID 244 when known."""
    if finding.body_part not in FINDING_SITES:
        raise ValueError(f"no finding site code for body part {finding.body_part!r}; expected one of {', '.join(FINDING_SITES)}")

    laterality = LATERALITIES.get(finding.laterality or "")
    return hd.sr.FindingSite(anatomic_location=FINDING_SITES[finding.body_part], laterality=laterality)


def _presence(positive: bool) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name=FRACTURE_CONCEPT, value=PRESENT if positive else ABSENT)


def _image_group(
    index: int,
    finding: ImageFinding,
    source: Dataset,
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """Build the TID 1501 group of one whole image: fracture present or absent and the ensemble probability."""
    probability = hd.sr.Measurement(
        name=FRACTURE_PROBABILITY,
        value=float(finding.probability),
        unit=codes.UCUM.NoUnits,
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=new_uid(), identifier=f"image {index} fracture assessment"),
        algorithm_id=algorithm,
        finding_sites=[_finding_site(finding)],
        measurements=[probability],
        qualitative_evaluations=[_presence(finding.positive)],
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)],
    )


def _box_groups(
    index: int,
    finding: ImageFinding,
    source: Dataset,
    algorithm: hd.sr.AlgorithmIdentification,
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """Build one TID 1410 group per detector box, with its confidence as Certainty of Finding in percent."""
    groups = []
    for number, box in enumerate(finding.boxes, start=1):
        if box.label not in BOX_FINDINGS:
            raise ValueError(f"no finding code for box label {box.label!r}; expected one of {', '.join(BOX_FINDINGS)}")

        certainty = hd.sr.Measurement(
            name=codes.DCM.CertaintyOfFinding,
            value=round(float(box.confidence) * 100.0, 2),
            unit=codes.UCUM.Percent,
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=new_uid(), identifier=f"image {index} box {number} {box.label}"),
                referenced_region=_box_region(box, source),
                finding_type=BOX_FINDINGS[box.label],
                algorithm_id=algorithm,
                finding_sites=[_finding_site(finding)],
                measurements=[certainty],
            )
        )
    return groups


def _box_region(box: Box, source: Dataset) -> hd.sr.ImageRegion:
    """Build a closed 5-point POLYLINE around ``box`` in image coordinates (PS3.3 C.18.6).

    The box corners are pixel-edge coordinates with (0, 0) at the top-left corner of the
    top-left pixel, which is the SCOORD convention, so they are used without a shift.
    """
    corners = np.array(
        [[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1], [box.x0, box.y0]],
        dtype=np.float32,
    )
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=corners,
        source_image=hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID),
    )


def _study_group(
    study: StudyFinding,
    sources: Sequence[Dataset],
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """Build the patient's TID 1501 group: fracture present if any image is positive, and the maximum probability."""
    maximum = hd.sr.Measurement(
        name=FRACTURE_PROBABILITY,
        value=float(study.probability),
        unit=codes.UCUM.NoUnits,
        derivation=codes.cid7464.Maximum,
    )
    anatomy = {(image.body_part, image.laterality): image for image in study.images}
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=new_uid(), identifier="study fracture conclusion"),
        algorithm_id=algorithm,
        finding_sites=[_finding_site(image) for image in anatomy.values()],
        measurements=[maximum],
        qualitative_evaluations=[_presence(study.positive)],
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID) for source in sources],
    )


def _observation_context(algorithm_name: str, algorithm_version: str, model_identity: str) -> hd.sr.ObservationContext:
    """Build the device observer context (TID 1002, TID 1004), whose UID is fixed per algorithm version."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=stable_uid(MANUFACTURER, algorithm_name, algorithm_version),
        name=MANUFACTURER_MODEL_NAME,
        manufacturer_name=MANUFACTURER,
        model_name=model_identity,
    )
    observer = hd.sr.ObserverContext(observer_type=codes.cid270.Device, observer_identifying_attributes=device)
    return hd.sr.ObservationContext(observer_device_context=observer)


def _procedures(study: StudyFinding) -> list[Code]:
    body_parts = sorted({image.body_part for image in study.images})
    unknown = [part for part in body_parts if part not in PROCEDURES]
    if unknown:
        raise ValueError(f"no procedure code for body parts {', '.join(unknown)}; expected one of {', '.join(PROCEDURES)}")
    return [PROCEDURES[part] for part in body_parts]


def _insert_image_library(report: hd.sr.MeasurementReport, findings: Sequence[ImageFinding], sources: Sequence[Dataset]) -> None:
    """Insert the Image Library (TID 1600) before Imaging Measurements, where TID 1500 places it."""
    group = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibraryGroup, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    group.ContentSequence = hd.sr.ContentSequence([_library_entry(finding, source) for finding, source in zip(findings, sources)])

    library = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibrary, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    library.ContentSequence = hd.sr.ContentSequence([group])

    content = report[0].ContentSequence
    position = next(i for i, item in enumerate(content) if item.name == codes.DCM.ImagingMeasurements)
    content.insert(position, library)


def _library_entry(finding: ImageFinding, source: Dataset) -> hd.sr.ImageContentItem:
    """Build an Image Library Entry (TID 1601) with descriptors (TID 1602), the view and the image laterality."""
    entry = hd.sr.ImageContentItem(
        name=Code("260753009", "SCT", "Source"),
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    entry.ContentSequence = hd.sr.ContentSequence(_library_descriptors(finding, source))
    return entry


def _library_descriptors(finding: ImageFinding, source: Dataset) -> list[hd.sr.ContentItem]:
    extra = _view_and_laterality(finding)
    modality = str(source.get("Modality", ""))
    if modality not in _PROJECTION_MODALITIES or "ImagerPixelSpacing" in source:
        return list(hd.sr.ImageLibraryEntryDescriptors(source, additional_descriptors=extra))

    # NOTE: without Imager Pixel Spacing (Type 3 in CR) highdicom 0.28.2 raises AttributeError,
    # so this path writes the TID 1602 items it would write, minus the two pixel spacing rows.
    context = hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT
    items: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(name=codes.DCM.Modality, value=_PROJECTION_MODALITIES[modality], relationship_type=context),
        hd.sr.NumContentItem(name=codes.DCM.PixelDataRows, value=int(source.Rows), unit=_PIXELS, relationship_type=context),
        hd.sr.NumContentItem(name=codes.DCM.PixelDataColumns, value=int(source.Columns), unit=_PIXELS, relationship_type=context),
    ]
    orientation = source.get("PatientOrientation")
    if orientation is not None and len(orientation) == 2:
        items.append(hd.sr.TextContentItem(name=codes.DCM.PatientOrientationRow, value=str(orientation[0]), relationship_type=context))
        items.append(hd.sr.TextContentItem(name=codes.DCM.PatientOrientationColumn, value=str(orientation[1]), relationship_type=context))
    return items + extra


def _view_and_laterality(finding: ImageFinding) -> list[hd.sr.ContentItem]:
    """Build the Image View (CID 4010) and Image Laterality (CID 244) descriptors, where codes exist."""
    context = hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT
    items: list[hd.sr.ContentItem] = []
    if finding.view in VIEWS:
        items.append(hd.sr.CodeContentItem(name=codes.DCM.ImageView, value=VIEWS[finding.view], relationship_type=context))
    if finding.laterality in LATERALITIES:
        items.append(hd.sr.CodeContentItem(name=codes.DCM.ImageLaterality, value=LATERALITIES[finding.laterality], relationship_type=context))
    return items


def _append_skipped_images(report: hd.sr.MeasurementReport, skipped: Sequence[SkippedImage]) -> None:
    """Append a Qualitative Evaluations container (TID 1500) with one TEXT item per skipped image."""
    if not skipped:
        return

    items = [
        hd.sr.TextContentItem(
            name=IMAGE_NOT_ANALYSED,
            value=f"SOP Instance UID {image.sop_instance_uid} was not analysed: {image.reason}",
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        for image in skipped
    ]
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence(items)
    report[0].ContentSequence.append(container)


def _document(report: hd.sr.MeasurementReport, sources: Sequence[Dataset], series_instance_uid: str) -> hd.sr.Comprehensive3DSR:
    """Wrap ``report`` in a Comprehensive 3D SR in the study of ``sources``."""
    private_scheme = CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name="pedfrac local codes",
        responsible_organization=MANUFACTURER,
    )
    with quiet_person_name_check():
        document = hd.sr.Comprehensive3DSR(
            evidence=sources,
            content=report,
            series_instance_uid=series_instance_uid,
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=new_uid(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
            coding_schemes=[private_scheme],
            series_description=SR_SERIES_DESCRIPTION,
            manufacturer_model_name=MANUFACTURER_MODEL_NAME,
            software_versions=software_version(),
            specific_character_set=None,
        )

    # NOTE: highdicom 0.28.2 rejects ['', 'ISO 2022 IR 149'] (its enum lists Korean as
    # 'ISO 2022 IR 159'), so Specific Character Set is copied after construction.
    if "SpecificCharacterSet" in sources[0]:
        document.SpecificCharacterSet = sources[0].SpecificCharacterSet
    return document
