"""Writing of a model package folder: the weights files and a ``manifest.json`` with their SHA-256.

The folder is built beside its destination and moved into place only after
:func:`inference.package.verify_package` accepts it, so a failed build never leaves a half-written
package where the service looks.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.package import MANIFEST_NAME, Manifest, Member, OperatingPoint, sha256_of, verify_package

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageMember:
    """A trained weights file and the manifest fields of its member, except ``weights_file`` and ``sha256``.

    ``fields`` contains the other keyword arguments of :class:`inference.package.Member`, such as
    ``name``, ``kind``, ``framework``, ``architecture``, ``body_parts``, ``views``, ``input_size``,
    ``classes`` and ``weight``. The file is copied as ``<name><suffix of weights>``.
    """

    weights: Path
    fields: dict[str, Any] = field(default_factory=dict)


def write_package(
    out_dir: Path,
    members: Sequence[PackageMember],
    operating_points: Sequence[OperatingPoint],
    *,
    name: str,
    version: str,
    intended_use: str,
    training_data: str,
    metrics: dict[str, float | int | str] | None = None,
) -> Manifest:
    """Copy the weights, write ``manifest.json`` (format version 1) and verify the package.

    Parameters
    ----------
    out_dir
        Package folder to create; an existing folder there is replaced once the new one verifies.
    members
        Weights files and their member fields, in ensemble order.
    operating_points
        Ensemble thresholds per body part and view.
    name, version, intended_use, training_data, metrics
        The manifest fields of the same names.

    Returns
    -------
    The manifest as :func:`inference.package.verify_package` read it back.

    Raises
    ------
    inference.package.PackageError
        When the written package does not verify.
    pydantic.ValidationError
        When a member or the manifest is invalid.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    # mkdtemp creates the folder for its owner only; a service running as another user must read it.
    staging.chmod(0o755)
    try:
        manifest = _write_into(staging, members, operating_points, name=name, version=version,
                               intended_use=intended_use, training_data=training_data, metrics=metrics or {})
        verify_package(staging)
        _replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    logger.info("wrote model package %s to %s", manifest.identity, out_dir)
    return verify_package(out_dir)


def _write_into(folder: Path, members: Sequence[PackageMember], operating_points: Sequence[OperatingPoint],
                **manifest_fields: Any) -> Manifest:
    entries = []
    for member in members:
        member_name = member.fields["name"]
        weights_file = f"{member_name}{Path(member.weights).suffix}"
        shutil.copyfile(member.weights, folder / weights_file)
        entries.append(Member(**member.fields, weights_file=weights_file, sha256=sha256_of(folder / weights_file)))

    manifest = Manifest(format_version=1, members=tuple(entries), operating_points=tuple(operating_points),
                        **manifest_fields)
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False)
    (folder / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
    return manifest


def _replace(staging: Path, out_dir: Path) -> None:
    """Move the verified staging folder to ``out_dir``, removing an older package there."""
    if out_dir.exists():
        retired = out_dir.with_name(f".{out_dir.name}-replaced")
        shutil.rmtree(retired, ignore_errors=True)
        out_dir.rename(retired)
        staging.rename(out_dir)
        shutil.rmtree(retired)
    else:
        staging.rename(out_dir)
