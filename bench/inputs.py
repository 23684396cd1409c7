"""Benchmark inputs: radiograph-sized DX files drawn from the project's phantoms, written to a work folder.

The phantom generator draws images of about 800 x 550 pixels. Here they are resized to the matrix
of a real DX detector and given quantum-like noise, so files are as large as a hospital's (2-10
MB at 16 bits) and compress as poorly. A set is cached in its folder with the parameters that made
it, so a repeated run skips the generation.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless

from inference.phantoms import generate_phantom
from tests.factories import dx_from_pixels, new_study

logger = logging.getLogger(__name__)

PARAMETERS_FILE = "parameters.json"
VIEWS = ("AP", "LAT")
# Standard deviation of the added noise, in stored values of a 12-bit image.
NOISE_SIGMA = 12.0
# Phantoms drawn once per set and reused at different sizes and noise, because drawing one takes
# about 0.25 s while resizing and noise take less.
PHANTOM_POOL = 8


@dataclass(frozen=True)
class SetParameters:
    """Parameters of a generated set; a cached set is reused only when they match."""

    kind: str
    count: int
    seed: int
    min_mb: float
    max_mb: float
    rows: int
    j2k_every: int
    body_part: str


def radiograph_set(folder: Path, count: int, *, seed: int = 0, min_mb: float = 2.0, max_mb: float = 10.0,
                   j2k_every: int = 4, body_part: str = "wrist") -> list[Path]:
    """Write ``count`` DX files in two-view studies, with uncompressed sizes spread over [min_mb, max_mb].

    Every ``j2k_every``-th file is JPEG 2000 lossless (0 for none). Returns the paths in sending order.
    """
    parameters = SetParameters("radiographs", count, seed, min_mb, max_mb, 0, j2k_every, body_part)
    cached = _cached(folder, parameters)
    if cached is not None:
        return cached

    rng = np.random.default_rng(seed)
    pool = _phantom_pool(rng, body_part)
    paths = []
    for index in range(count):
        if index % 2 == 0:
            study = new_study(patient_name=f"Bench^{index // 2:05d}", patient_id=f"BENCH{index // 2:05d}")
        megabytes = float(rng.uniform(min_mb, max_mb))
        view = VIEWS[index % 2]
        pixels = _radiograph_pixels(rng, pool[(index // 2) % len(pool)][view], megabytes)
        compress = j2k_every > 0 and index % j2k_every == j2k_every - 1
        dataset = _dataset(pixels, study, body_part=body_part, view=view, number=index % 2 + 1, compress=compress)
        paths.append(_save(folder, index, dataset))

    _write_parameters(folder, parameters, paths)
    return paths


def two_view_studies(folder: Path, count: int, *, rows: int, seed: int = 0, body_part: str = "wrist",
                     j2k: bool = False) -> list[list[Path]]:
    """Write ``count`` studies of one AP and one lateral DX image, ``rows`` pixels high; return them per study."""
    parameters = SetParameters("studies", count, seed, 0.0, 0.0, rows, 1 if j2k else 0, body_part)
    cached = _cached(folder, parameters)
    if cached is not None:
        return [cached[index : index + 2] for index in range(0, len(cached), 2)]

    rng = np.random.default_rng(seed)
    pool = _phantom_pool(rng, body_part)
    paths = []
    for index in range(count):
        study = new_study(patient_name=f"Bench^{index:05d}", patient_id=f"BENCH{index:05d}")
        for number, view in enumerate(VIEWS, start=1):
            phantom = pool[index % len(pool)][view]
            pixels = _resized(rng, phantom, rows, round(rows * phantom.shape[1] / phantom.shape[0]))
            dataset = _dataset(pixels, study, body_part=body_part, view=view, number=number, compress=j2k)
            paths.append(_save(folder, len(paths), dataset))

    _write_parameters(folder, parameters, paths)
    return [paths[index : index + 2] for index in range(0, len(paths), 2)]


def _phantom_pool(rng: np.random.Generator, body_part: str) -> list[dict[str, np.ndarray]]:
    """Draw AP and lateral phantom pairs; each pair shares one patient's anatomy and side."""
    pool = []
    for index in range(PHANTOM_POOL):
        laterality = "L" if index % 2 else "R"
        fracture = index % 3 == 0
        pool.append({view: generate_phantom(rng, body_part=body_part, view=view, laterality=laterality,
                                            fracture=fracture).image for view in VIEWS})
    return pool


def _radiograph_pixels(rng: np.random.Generator, phantom: np.ndarray, megabytes: float) -> np.ndarray:
    """Resize ``phantom`` to the matrix whose 16-bit Pixel Data is ``megabytes`` long, keeping its aspect."""
    pixels = megabytes * 1e6 / 2
    aspect = phantom.shape[1] / phantom.shape[0]
    rows = max(16, round(math.sqrt(pixels / aspect)))
    columns = max(16, round(rows * aspect))
    return _resized(rng, phantom, rows, columns)


def _resized(rng: np.random.Generator, phantom: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Return ``phantom`` at ``rows`` x ``columns`` as 12-bit stored values with added noise."""
    image = cv2.resize(phantom.astype(np.float32), (columns, rows), interpolation=cv2.INTER_LINEAR)
    noise = rng.standard_normal(image.shape, dtype=np.float32) * NOISE_SIGMA
    return np.clip(image * 4095.0 + noise, 0, 4095).astype(np.uint16)


def _dataset(pixels: np.ndarray, study: Dataset, *, body_part: str, view: str, number: int,
             compress: bool) -> Dataset:
    laterality = "R"
    dicom_view = "AP" if view == "AP" else "LATERAL"
    dataset = dx_from_pixels(pixels, study, body_part=body_part.upper(), view_position="AP" if view == "AP" else "",
                             laterality=laterality, series_description=f"{body_part.upper()} {dicom_view}",
                             series_number=number)
    dataset.StudyDescription = f"{body_part.upper()} 2 VIEWS"
    dataset.InstanceNumber = number
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.Manufacturer = "pedfrac benchmark inputs"
    if compress:
        dataset.compress(JPEG2000Lossless)
    return dataset


def _save(folder: Path, index: int, dataset: Dataset) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{index:05d}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def _cached(folder: Path, parameters: SetParameters) -> list[Path] | None:
    """Return the paths of a set already generated in ``folder`` with ``parameters``, else None."""
    record = folder / PARAMETERS_FILE
    if not record.is_file():
        return None

    stored = json.loads(record.read_text())
    paths = [folder / name for name in stored.get("files", [])]
    if stored.get("parameters") != asdict(parameters) or not all(path.is_file() for path in paths):
        return None
    logger.info("reusing %d generated files in %s", len(paths), folder)
    return paths


def _write_parameters(folder: Path, parameters: SetParameters, paths: list[Path]) -> None:
    record = {"parameters": asdict(parameters), "files": [path.name for path in paths]}
    (folder / PARAMETERS_FILE).write_text(json.dumps(record, indent=2))
    total = sum(path.stat().st_size for path in paths)
    logger.info("generated %d files, %.1f MB, in %s", len(paths), total / 1e6, folder)
