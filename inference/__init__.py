"""Pixels, anatomy, model packages and the ensemble: from DICOM datasets to findings."""
