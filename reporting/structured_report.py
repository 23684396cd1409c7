"""TID 1500 Measurement Report of a study's fracture reading, as a Comprehensive 3D SR.

Content tree (PS3.16 TID 1500), built with highdicom's templates:

* Procedure Reported: LOINC "XR Wrist Views" or "XR Elbow Views" for each body part read.
* Image Library (TID 1600): every source image that was read.
* Imaging Measurements: per image a TID 1501 group with fracture present or absent, the
  ensemble probability, the finding site with laterality and Algorithm Identification (TID
  4019). An elbow lateral image that a detector read also gets elbow joint effusion (the
  fat-pad sign) present or absent. Each detector box gets a TID 1410 group whose region is a
  closed 5-point POLYLINE SCOORD, with its operating point among the algorithm parameters. One
  more TID 1501 group contains the patient-level result and the maximum probability.
* Qualitative Evaluations: the patient-level result as a sentence (DCM 121077 "Conclusion"),
  then one TEXT item per body part and side that names the views read (a single view
  included), then one TEXT item per image that was not analysed, with the reason.

The document names the model package in its Contributing Equipment Sequence (0018,A001), as
IHE AI Results specifies. A report that replaces an earlier one of the same study lists it in
the Predecessor Documents Sequence (0040,A360) (SR Document General, PS3.3 C.17.2).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from inference.findings import (
    FAT_PAD,
    FRACTURE,
    HIGH_SPECIFICITY,
    Box,
    ImageFinding,
    StudyFinding,
)
from inference.pairing import describe_pair, pair_name
from reporting.captions import anatomy_line, disclaimer, verdict_line
from reporting.identifiers import (
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    SR_SERIES_DESCRIPTION,
    SR_SERIES_NUMBER,
    algorithm_equipment,
    new_uid,
    quiet_person_name_check,
    software_version,
    stable_uid,
)

logger = logging.getLogger(__name__)

# Standard codes. SNOMED CT 72704001 is the morphologic abnormality "Fracture", which names
# what an image shows, while 125605004 "Fracture of bone" is the disorder, a diagnosis. Neither
# is in a DICOM context group as pydicom 3.0.2 lists them, and TID 1501 leaves the concept name
# of a qualitative evaluation open. Present and Absent are the values of CID 241 "Present-Absent
# Only" as pydicom 3.0.2 lists them, where Absent is SCT 272519000 rather than the SNOMED
# qualifier 2667000 that HL7 value sets use.
FRACTURE_CONCEPT: Final = Code("72704001", "SCT", "Fracture")
# An elevated elbow fat pad on a lateral view is the radiographic sign of a joint effusion. The
# effusion is coded as SCT 41699000 "Effusion" (CID 12280) in a group whose finding site is
# SCT 16953009 "Elbow joint", since no pre-coordinated elbow effusion code is in the CIDs.
EFFUSION_CONCEPT: Final = codes.SCT.Effusion
PRESENT: Final = codes.cid241.Present
ABSENT: Final = codes.cid241.Absent
QUALITATIVE_EVALUATIONS: Final = Code("C0034375", "UMLS", "Qualitative Evaluations")

# LOINC radiology codes for the procedures pedfrac reads.
PROCEDURES: Final = {
    "wrist": Code("24619-9", "LN", "XR Wrist Views"),
    "elbow": Code("24676-9", "LN", "XR Elbow Views"),
}
FINDING_SITES: Final = {"wrist": codes.SCT.WristJoint, "elbow": codes.SCT.ElbowJoint}
# Bone structures of CID 7304 for a box that names its bone.
BONE_SITES: Final = {"radius": codes.SCT.RadiusBone, "ulna": codes.SCT.Ulna, "humerus": codes.SCT.Humerus}
LATERALITIES: Final = {"R": codes.cid244.Right, "L": codes.cid244.Left, "B": codes.cid244.Bilateral}
VIEWS: Final = {"AP": codes.cid4010.AnteroPosterior, "LAT": codes.cid4010.LateralProjection}

# Private codes, for concepts that no standard code fits. DICOM reserves coding scheme
# designators starting with "99" for private schemes (PS3.3 Section 8, Encoding of Coded Entry
# Data). The SR declares this scheme in its Coding Scheme Identification Sequence (0008,0110).
PRIVATE_SCHEME: Final = "99PEDFRAC"
FRACTURE_PROBABILITY: Final = Code("FRACPROB", PRIVATE_SCHEME, "Fracture probability")
ELBOW_FAT_PAD_SIGN: Final = Code("FATPAD", PRIVATE_SCHEME, "Elevated elbow fat pad")
IMAGE_NOT_ANALYSED: Final = Code("NOTANALYSED", PRIVATE_SCHEME, "Image not analysed")
VIEW_PAIR: Final = Code("VIEWPAIR", PRIVATE_SCHEME, "Views read for one body part and side")

BOX_FINDINGS: Final = {FRACTURE: FRACTURE_CONCEPT, FAT_PAD: ELBOW_FAT_PAD_SIGN}

# Projection radiography modalities whose TID 1603 descriptors highdicom 0.28.2 builds only
# when Imager Pixel Spacing (0018,1164) is present.
_PROJECTION_MODALITIES: Final = {"CR": codes.cid29.ComputedRadiography, "DX": codes.cid29.DigitalRadiography}
_PIXELS: Final = Code("{pixels}", "UCUM", "Pixels")


@dataclass(frozen=True)
class ReportReference:
    """Identifiers of an earlier SR of the same study that a new report replaces."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str

    def as_dataset(self) -> Dataset:
        """Return the four UIDs as a dataset, the form highdicom takes for a previous version."""
        dataset = Dataset()
        dataset.StudyInstanceUID = self.study_instance_uid
        dataset.SeriesInstanceUID = self.series_instance_uid
        dataset.SOPInstanceUID = self.sop_instance_uid
        dataset.SOPClassUID = self.sop_class_uid
        return dataset


def build_structured_report(
    sources: Sequence[pydicom.Dataset],
    study: StudyFinding,
    *,
    series_instance_uid: str,
    model_identity: str,
    algorithm_name: str,
    algorithm_version: str,
    predecessor: ReportReference | None = None,
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
    predecessor
        The SR of an earlier reading of the same study that this report replaces, listed in
        the Predecessor Documents Sequence (0040,A360); None for a first reading.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Completion Flag COMPLETE, Verification Flag UNVERIFIED and Preliminary Flag
        PRELIMINARY (PS3.3 C.17.2), in the study of the sources.

    Raises
    ------
    ValueError
        If no image was read, a source is missing or belongs to another study, the predecessor
        is of another study, or a body part or box label has no code. A view without a code is
        left out of the Image Library.
    """
    read_sources = _read_sources(sources, study)
    _check_predecessor(predecessor, study)

    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations] = []
    for index, (finding, source) in enumerate(zip(study.images, read_sources), start=1):
        groups.append(_image_group(index, finding, source, _algorithm_with_parameters(finding, algorithm_name, algorithm_version)))
        groups.extend(_box_groups(index, finding, source, algorithm_name, algorithm_version))
    groups.append(_study_group(study, read_sources, _study_algorithm(algorithm_name, algorithm_version)))

    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(algorithm_name, algorithm_version, model_identity),
        procedure_reported=_procedures(study),
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    _insert_image_library(report, study.images, read_sources)
    _append_qualitative_evaluations(report, study)

    document = _document(report, read_sources, series_instance_uid, model_identity, predecessor)
    logger.info(
        "built structured report %s for study %s: %d images read, %d skipped, fracture %s, replaces %s",
        document.SOPInstanceUID,
        study.study_instance_uid,
        len(study.images),
        len(study.skipped),
        "present" if study.positive else "absent",
        predecessor.sop_instance_uid if predecessor else "none",
    )
    return document


def _check_predecessor(predecessor: ReportReference | None, study: StudyFinding) -> None:
    if predecessor is not None and predecessor.study_instance_uid != study.study_instance_uid:
        raise ValueError(
            f"predecessor report {predecessor.sop_instance_uid} belongs to study {predecessor.study_instance_uid}, "
            f"expected {study.study_instance_uid}"
        )


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
    """Build Algorithm Identification (TID 4019) with the parameters that reproduce the image's reading.

    They are the decision threshold, the attributes (or the view classifier) that decided view
    and body part, the ensemble members, every pixel and model input step with its parameters,
    and the non-conformance problems the policy let through.
    """
    parameters = [
        f"decision threshold {finding.threshold:.3f}",
        f"view {finding.view} from {finding.view_source}",
        f"body part {finding.body_part} from {finding.body_part_source}",
    ]
    parameters += [
        f"member {member.member} ({member.kind}) probability {member.probability:.3f} weight {member.weight:.3f}"
        for member in finding.members
    ]
    parameters += [f"step {step.describe()}" for step in finding.steps]
    parameters += [f"non-conformant input: {problem}" for problem in finding.nonconformance]
    return hd.sr.AlgorithmIdentification(name=name, version=version, parameters=parameters, manufacturer=MANUFACTURER)


def _box_algorithm(box: Box, name: str, version: str) -> hd.sr.AlgorithmIdentification:
    """Build Algorithm Identification (TID 4019) whose parameters name the box's operating point."""
    style = "solid" if box.tier == HIGH_SPECIFICITY else "dotted"
    parameters = [f"operating point {box.tier.replace('_', ' ')} (drawn {style})", f"detector confidence {box.confidence:.3f}"]
    return hd.sr.AlgorithmIdentification(name=name, version=version, parameters=parameters, manufacturer=MANUFACTURER)


def _study_algorithm(name: str, version: str) -> hd.sr.AlgorithmIdentification:
    """Build Algorithm Identification (TID 4019) whose parameters state the patient-level rule."""
    parameters = ["patient positive if any image is positive", "patient probability is the maximum image probability"]
    return hd.sr.AlgorithmIdentification(name=name, version=version, parameters=parameters, manufacturer=MANUFACTURER)


def _finding_site(finding: ImageFinding) -> hd.sr.FindingSite:
    """Build the Finding Site (SNOMED CT wrist or elbow joint) with Laterality from CID 244 when known."""
    if finding.body_part not in FINDING_SITES:
        raise ValueError(f"no finding site code for body part {finding.body_part!r}; expected one of {', '.join(FINDING_SITES)}")

    laterality = LATERALITIES.get(finding.laterality or "")
    return hd.sr.FindingSite(anatomic_location=FINDING_SITES[finding.body_part], laterality=laterality)


def _box_finding_sites(finding: ImageFinding, box: Box) -> list[hd.sr.FindingSite]:
    """Build the joint's Finding Site and, when the box names its bone, the bone's (CID 7304)."""
    sites = [_finding_site(finding)]
    if box.bone is not None:
        laterality = LATERALITIES.get(finding.laterality or "")
        sites.append(hd.sr.FindingSite(anatomic_location=BONE_SITES[box.bone], laterality=laterality))
    return sites


def _presence(positive: bool) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name=FRACTURE_CONCEPT, value=PRESENT if positive else ABSENT)


def _effusion(finding: ImageFinding) -> list[hd.sr.QualitativeEvaluation]:
    """Build elbow joint effusion present or absent for an elbow lateral image that a detector read.

    The effusion is present when the detector found a fat-pad box at its high-specificity
    operating point. Other images, and an elbow lateral image that no detector read, get no
    effusion item, because nothing looked for the sign there.
    """
    detector_read = any(member.kind == "detector" for member in finding.members)
    if finding.body_part != "elbow" or finding.view != "LAT" or not detector_read:
        return []

    present = any(box.label == FAT_PAD and box.tier == HIGH_SPECIFICITY for box in finding.boxes)
    return [hd.sr.QualitativeEvaluation(name=EFFUSION_CONCEPT, value=PRESENT if present else ABSENT)]


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
        qualitative_evaluations=[_presence(finding.positive), *_effusion(finding)],
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)],
    )


def _box_groups(
    index: int,
    finding: ImageFinding,
    source: Dataset,
    algorithm_name: str,
    algorithm_version: str,
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
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=new_uid(), identifier=f"image {index} box {number} {box.label} {box.tier.replace('_', ' ')}"
                ),
                referenced_region=_box_region(box, source),
                finding_type=BOX_FINDINGS[box.label],
                algorithm_id=_box_algorithm(box, algorithm_name, algorithm_version),
                finding_sites=_box_finding_sites(finding, box),
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
    orientation = source.get("PatientOrientation")
    complete = "ImagerPixelSpacing" in source and orientation is not None and len(orientation) == 2
    if modality not in _PROJECTION_MODALITIES or complete:
        return list(hd.sr.ImageLibraryEntryDescriptors(source, additional_descriptors=extra))

    # NOTE: highdicom 0.28.2 raises for a projection image without Imager Pixel Spacing (Type 3
    # in CR) or with an empty Patient Orientation (Type 2C). This path writes the TID 1602 items
    # it would write, without the two pixel spacing rows and without an orientation it lacks.
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


def _append_qualitative_evaluations(report: hd.sr.MeasurementReport, study: StudyFinding) -> None:
    """Append the Qualitative Evaluations container (TID 1500): a conclusion, the view pairs, then the skipped images.

    The conclusion repeats the coded result as a sentence, which renderers such as dcmtk's
    dsr2html show as it is, where they show coded items without their concept names.
    """
    items = [
        hd.sr.TextContentItem(
            name=codes.DCM.Conclusion,
            value=_conclusion(study),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    ]
    items += [
        hd.sr.TextContentItem(
            name=VIEW_PAIR,
            value=describe_pair(pair),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        for pair in study.pairs
    ]
    items += [
        hd.sr.TextContentItem(
            name=IMAGE_NOT_ANALYSED,
            value=f"SOP Instance UID {image.sop_instance_uid} was not analysed: {image.reason}",
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        for image in study.skipped
    ]
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence(items)
    report[0].ContentSequence.append(container)


def _conclusion(study: StudyFinding) -> str:
    """Return the patient-level result in one paragraph, e.g. "AI: fracture suspected, p=0.91 on the right wrist AP ..."."""
    strongest = max(study.images, key=lambda image: image.probability)
    positives = sum(image.positive for image in study.images)
    sentences = [
        f"{verdict_line(strongest, language='en')} on the {anatomy_line(strongest, language='en')} image "
        f"({positives} of {len(study.images)} images read are positive)."
    ]
    if any(item.value == PRESENT for image in study.images for item in _effusion(image)):
        sentences.append("Elbow joint effusion (fat-pad sign) suspected.")
    single = [pair for pair in study.pairs if pair.single_view]
    if single:
        sides = ", ".join(pair_name(pair) for pair in single)
        sentences.append(f"Only one view was read for: {sides}.")
    if study.skipped:
        count = len(study.skipped)
        sentences.append(f"{count} {'image' if count == 1 else 'images'} not analysed.")
    sentences.append(f"{disclaimer(language='en')}.")
    return " ".join(sentences)


def _document(
    report: hd.sr.MeasurementReport,
    sources: Sequence[Dataset],
    series_instance_uid: str,
    model_identity: str,
    predecessor: ReportReference | None,
) -> hd.sr.Comprehensive3DSR:
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
            previous_versions=[predecessor.as_dataset()] if predecessor else None,
            contributing_equipment=[algorithm_equipment(model_identity)],
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
