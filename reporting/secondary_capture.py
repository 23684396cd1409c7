"""Secondary Capture Image of a rendered overlay, placed in the study of its source radiograph."""
from __future__ import annotations

import logging
from typing import Final

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from inference.findings import ImageFinding
from reporting.identifiers import (
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    SC_SERIES_DESCRIPTION,
    SC_SERIES_NUMBER,
    algorithm_equipment,
    new_uid,
    quiet_person_name_check,
    series_laterality,
    software_version,
)

logger = logging.getLogger(__name__)

# highdicom 0.28.2 requires a Patient Orientation pair for a PATIENT coordinate system. When
# the source has none, the SC is built with this pair and the attribute is then emptied. Patient
# Orientation is Type 2C in the General Image module (PS3.3 C.7.6.1), so for an SC it must be
# present but may be empty.
_UNKNOWN_ORIENTATION_PLACEHOLDER: Final = ("A", "F")

DERIVATION: Final = codes.DCM.ComputerAidedDetection


def build_secondary_capture(
    source: pydicom.Dataset,
    overlay: np.ndarray,
    finding: ImageFinding,
    *,
    series_instance_uid: str,
    instance_number: int,
    model_identity: str,
) -> hd.sc.SCImage:
    """Wrap an RGB overlay of ``source`` as a Secondary Capture Image (PS3.3 A.8.1).

    Patient and study attributes come from ``source`` through highdicom's
    ``SCImage.from_ref_dataset``. The result is marked as a derived image with burned-in
    annotation: Image Type ``DERIVED\\SECONDARY`` and Burned In Annotation ``YES`` (General
    Image, PS3.3 C.7.6.1), Conversion Type ``WSD`` (SC Equipment, PS3.3 C.8.6.1). The Source
    Image Sequence references ``source`` with purpose "Source image for image processing
    operation" (CID 7202).

    Parameters
    ----------
    source
        The radiograph that was read; its Specific Character Set is copied unchanged.
    overlay
        RGB uint8 array of shape (Rows, Columns, 3) of ``source``, from ``render_overlay``.
    finding
        The reading rendered in ``overlay``; its SOP Instance UID must be that of ``source``.
    series_instance_uid
        Series Instance UID shared by all overlays of the study.
    instance_number
        Instance Number within that series, starting at 1.
    model_identity
        Model name and version, recorded in Contributing Equipment and the derivation text.

    Raises
    ------
    ValueError
        If the overlay does not match ``source`` or the finding is for another image.
    """
    _check_inputs(source, overlay, finding)
    orientation = _patient_orientation(source)
    laterality = series_laterality(source)

    with quiet_person_name_check():
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=overlay,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_instance_uid,
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=new_uid(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            laterality=laterality,
            patient_orientation=orientation or _UNKNOWN_ORIENTATION_PLACEHOLDER,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            contributing_equipment=[algorithm_equipment(model_identity)],
            manufacturer_model_name=MANUFACTURER_MODEL_NAME,
            software_versions=software_version(),
            series_description=SC_SERIES_DESCRIPTION,
            specific_character_set=None,
        )

    if orientation is None:
        image.PatientOrientation = ""
    if laterality is None:
        image.Laterality = ""
    _copy_character_set(source, image)
    _mark_derived(image, source, finding, model_identity)
    _copy_body_part(source, image)

    logger.info(
        "built secondary capture %s from source %s in study %s",
        image.SOPInstanceUID,
        source.SOPInstanceUID,
        image.StudyInstanceUID,
    )
    return image


def _check_inputs(source: Dataset, overlay: np.ndarray, finding: ImageFinding) -> None:
    if finding.sop_instance_uid != source.SOPInstanceUID:
        raise ValueError(
            f"finding is for SOP instance {finding.sop_instance_uid}, "
            f"but the source dataset has SOP Instance UID {source.SOPInstanceUID}"
        )

    expected = (int(source.Rows), int(source.Columns), 3)
    if overlay.shape != expected or overlay.dtype != np.uint8:
        raise ValueError(
            f"overlay must be a uint8 RGB array of shape {expected} to match the source Rows (0028,0010) "
            f"and Columns (0028,0011); found shape {overlay.shape} and dtype {overlay.dtype}"
        )


def _patient_orientation(source: Dataset) -> tuple[str, str] | None:
    """Return the two values of Patient Orientation (0020,0020), or None when the source has no such pair."""
    orientation = source.get("PatientOrientation")
    if orientation is None or isinstance(orientation, str) or len(orientation) != 2:
        logger.info("source %s has no two-valued Patient Orientation; the overlay gets an empty one", source.SOPInstanceUID)
        return None
    return str(orientation[0]), str(orientation[1])


def _copy_character_set(source: Dataset, image: Dataset) -> None:
    """Copy Specific Character Set (0008,0005) from ``source`` without highdicom's check.

    NOTE: highdicom 0.28.2 rejects ``['', 'ISO 2022 IR 149']`` (its enum lists Korean as
    'ISO 2022 IR 159' and has no empty first value), although PS3.3 C.12.1.1.2 defines both.
    The value is therefore set after construction; pydicom encodes text with it when the
    dataset is written.
    """
    if "SpecificCharacterSet" in source:
        image.SpecificCharacterSet = source.SpecificCharacterSet


def _mark_derived(image: Dataset, source: Dataset, finding: ImageFinding, model_identity: str) -> None:
    """Set the attributes that describe the overlay as a derived, annotated image (General Image, PS3.3 C.7.6.1).

    Derivation Code Sequence (0008,9215) takes its codes from CID 7203 "Image Derivation",
    which has no concept for findings burned into a copy, so it contains (110004, DCM, "Computer
    Aided Detection") instead.
    """
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.ConversionType = hd.sc.ConversionTypeValues.WSD.value
    image.BurnedInAnnotation = "YES"
    image.DerivationCodeSequence = [hd.sr.CodedConcept.from_code(DERIVATION)]

    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = [
        hd.sr.CodedConcept.from_code(codes.cid7202.SourceImageForImageProcessingOperation)
    ]
    image.SourceImageSequence = [reference]

    drawn = "Grad-CAM heat map, detector boxes and caption" if finding.heatmap is not None else "detector boxes and caption"
    description = f"AI fracture overlay of SOP instance {source.SOPInstanceUID}: {drawn} burned in by {model_identity}"
    image.DerivationDescription = description[:1024]


def _copy_body_part(source: Dataset, image: Dataset) -> None:
    if source.get("BodyPartExamined"):
        image.BodyPartExamined = source.BodyPartExamined
