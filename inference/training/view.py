"""Training of the view classifier and adding it to an existing model package.

The classifier predicts ``"<body part> <view>"`` (wrist or elbow, AP or lateral) or ``"other"``
from the pixels, for images whose attributes are silent or contradict each other. It is trained on
synthetic phantoms (:func:`inference.phantoms.generate_dataset`) and, for ``"other"``, on synthetic
test patterns, noise fields and blob shapes, all with the same model input the service builds
(:func:`inference.preprocess.model_input`). It is kept small: mobilenetv3_small_050 at 128 px has
about 0.6 million parameters, 1.2 MB in float16.

Run on a package folder::

    python -m inference.training.view --package models/demo

which trains, then rewrites the package beside itself with the view classifier added and swaps it
in only after :func:`inference.package.verify_package` accepts it.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from inference.package import (
    MANIFEST_NAME,
    OTHER_CLASS,
    VIEW_CLASSES,
    Manifest,
    Member,
    PackageError,
    sha256_of,
    verify_package,
)
from inference.phantoms import Phantom, generate_dataset
from inference.training.classifier import normalise, prepare_inputs

logger = logging.getLogger(__name__)

MEMBER_NAME = "view-classifier"


@dataclass(frozen=True)
class ViewTrainingConfig:
    """Set sizes (patients, each with an AP and a lateral view) and hyper-parameters of one training run.

    ``other_per_class`` sets how many synthetic ``"other"`` images are drawn, as a multiple of the
    mean count of one view class; 0 trains without that class. ``window_variants`` is the number of copies of each image, beside the image itself, shown
    through a random window and gamma before the model input is built, because hospitals window
    their radiographs differently. ``brightness`` and ``contrast`` are the maximum random offset
    and relative gain applied to model inputs in [0, 1]. ``erase`` is the side, as a fraction of
    the input, of the corner patch blanked at random, so that the model cannot lean on where the
    side marker is burned in.
    """

    architecture: str = "mobilenetv3_small_050"
    input_size: int = 128
    train_patients: int = 160
    validation_patients: int = 40
    epochs: int = 12
    window_variants: int = 1
    other_per_class: float = 1.0
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    brightness: float = 0.1
    contrast: float = 0.2
    erase: float = 0.25
    mean: float = 0.5
    std: float = 0.25
    min_confidence: float = 0.8
    phantom_seed: int = 7
    seed: int = 0
    device: str | None = None


@dataclass
class ViewTrainingResult:
    """The model with the weights of its best validation epoch, in eval mode on the CPU."""

    model: torch.nn.Module
    classes: tuple[str, ...]
    validation_accuracy: float
    best_epoch: int
    history: list[tuple[int, float, float]] = field(default_factory=list)


def view_label(phantom: Phantom) -> str:
    """Return the class of a phantom, e.g. ``"elbow LAT"``."""
    return f"{phantom.body_part} {phantom.view}"


def create_view_model(architecture: str, classes: int) -> torch.nn.Module:
    """Build an untrained timm model with one grey input channel and one logit per class."""
    import timm

    return timm.create_model(architecture, pretrained=False, num_classes=classes, in_chans=1)


def train_view_classifier(
    train: Sequence[Phantom],
    validation: Sequence[Phantom],
    config: ViewTrainingConfig = ViewTrainingConfig(),
) -> ViewTrainingResult:
    """Train a view classifier from scratch and keep the epoch with the best validation accuracy.

    Parameters
    ----------
    train, validation
        Phantoms of disjoint patients; every class of :data:`inference.package.VIEW_CLASSES` must
        occur in the training set.
    config
        Hyper-parameters. The same seed, data, device and thread count give the same weights.
    """
    views = VIEW_CLASSES[:-1]
    found = tuple(name for name in views if any(view_label(item) == name for item in train))
    if found != views:
        raise ValueError(f"training phantoms contain classes {list(found)}; every one of {list(views)} is needed")
    classes = (*views, OTHER_CLASS) if config.other_per_class > 0 else views
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    rng = np.random.default_rng(config.seed)
    train_images, train_labels = _with_window_variants(train, config.window_variants, rng)
    validation_images = [_random_window(item.image, rng) for item in validation]
    validation_labels = [view_label(item) for item in validation]
    if OTHER_CLASS in classes:
        for images, labels, count in ((train_images, train_labels, len(train)), (validation_images, validation_labels,
                                                                                 len(validation))):
            others = synthetic_other_images(max(1, round(count / len(views) * config.other_per_class)), rng)
            images.extend(others)
            labels.extend([OTHER_CLASS] * len(others))

    train_x = prepare_inputs(train_images, config.input_size)
    train_y = torch.tensor([classes.index(label) for label in train_labels])
    # Validation images are windowed at random too, because radiographs reach the service windowed.
    validation_x = normalise(prepare_inputs(validation_images, config.input_size), config.mean, config.std)
    validation_y = np.array([classes.index(label) for label in validation_labels])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_view_model(config.architecture, len(classes)).to(device)
        generator = torch.Generator().manual_seed(config.seed)
        return _fit(model, classes, train_x, train_y, validation_x, validation_y, config, device, generator)


def _with_window_variants(phantoms: Sequence[Phantom], variants: int,
                          rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """Return each phantom's image and ``variants`` randomly windowed copies of it, with their labels."""
    images, labels = [], []
    for item in phantoms:
        images.append(item.image)
        images.extend(_random_window(item.image, rng) for _ in range(variants))
        labels.extend([view_label(item)] * (variants + 1))
    return images, labels


def synthetic_other_images(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Draw ``count`` display images that show no elbow or wrist: test patterns, noise fields and blobs.

    They teach the ``"other"`` class what is not a limb radiograph. They are not radiographs of
    other body parts, so an unseen chest or knee radiograph may still look closer to a limb.
    """
    drawers = (_stripes, _noise_field, _blobs, _ramp)
    images = []
    for _ in range(count):
        rows, columns = int(rng.integers(128, 700)), int(rng.integers(128, 700))
        image = drawers[int(rng.integers(len(drawers)))](rng, rows, columns)
        images.append(_random_window(np.clip(image, 0.0, 1.0).astype(np.float32), rng))
    return images


def _stripes(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """Draw bars or a checkerboard at a random period and angle, as on a test pattern."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 60)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period
    image = (np.floor(phase) % 2).astype(np.float32)
    if rng.random() < 0.4:
        image = np.abs(image - (np.floor((y * np.cos(angle) - x * np.sin(angle)) / period) % 2))
    return image * rng.uniform(0.4, 1.0) + rng.uniform(0, 0.3)


def _noise_field(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """Draw Gaussian noise blurred at a random scale and stretched to [0, 1]."""
    noise = rng.normal(size=(rows, columns)).astype(np.float32)
    field = cv2.GaussianBlur(noise, (0, 0), sigmaX=float(rng.uniform(1, 30)))
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def _blobs(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """Draw a few large soft ellipses over a dark background, like a trunk or a skull in outline."""
    image = np.zeros((rows, columns), dtype=np.float32)
    for _ in range(int(rng.integers(1, 5))):
        centre = (int(rng.integers(0, columns)), int(rng.integers(0, rows)))
        axes = (int(rng.integers(columns // 6, columns // 2 + 1)), int(rng.integers(rows // 6, rows // 2 + 1)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.3, 1.0)), -1)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(2, 15)))
    return image + rng.normal(0, 0.03, image.shape).astype(np.float32)


def _ramp(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """Draw a linear grey ramp with grey squares, as on a display test pattern."""
    image = np.tile(np.linspace(0, 1, columns, dtype=np.float32), (rows, 1))
    if rng.random() < 0.5:
        image = np.tile(np.linspace(0, 1, rows, dtype=np.float32)[:, None], (1, columns))
    for _ in range(int(rng.integers(0, 8))):
        top, left = int(rng.integers(0, rows)), int(rng.integers(0, columns))
        size = int(rng.integers(8, max(9, min(rows, columns) // 4)))
        image[top : top + size, left : left + size] = rng.uniform(0, 1)
    return image


def _random_window(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Show a display image through a random linear window (center 0.3-0.6, width 0.5-1.2) and gamma 0.75-1.35."""
    center, width = rng.uniform(0.3, 0.6), rng.uniform(0.5, 1.2)
    windowed = np.clip((image - (center - width / 2)) / width, 0.0, 1.0)
    return (windowed ** rng.uniform(0.75, 1.35)).astype(np.float32)


def _fit(model: torch.nn.Module, classes: tuple[str, ...], train_x: np.ndarray, train_y: torch.Tensor,
         validation_x: torch.Tensor, validation_y: np.ndarray, config: ViewTrainingConfig, device: torch.device,
         generator: torch.Generator) -> ViewTrainingResult:
    steps = max(1, int(np.ceil(len(train_x) / config.batch_size)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate,
                                                   total_steps=config.epochs * steps, pct_start=0.15)

    result = ViewTrainingResult(model=model, classes=classes, validation_accuracy=-1.0, best_epoch=0)
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, config.epochs + 1):
        started = time.monotonic()
        loss = _train_epoch(model, train_x, train_y, config, device, generator, optimizer, schedule, steps)
        accuracy = float((_predict(model, validation_x, device).argmax(1) == validation_y).mean())
        result.history.append((epoch, loss, accuracy))
        logger.info("view classifier epoch %d/%d: train loss %.4f, validation accuracy %.3f (%.0f s)", epoch,
                    config.epochs, loss, accuracy, time.monotonic() - started)

        if accuracy > result.validation_accuracy:
            result.validation_accuracy, result.best_epoch = accuracy, epoch
            best_state = copy.deepcopy(model.state_dict())

    model.load_state_dict(best_state)
    result.model = model.cpu().eval()
    return result


def _train_epoch(model: torch.nn.Module, train_x: np.ndarray, train_y: torch.Tensor, config: ViewTrainingConfig,
                 device: torch.device, generator: torch.Generator, optimizer: torch.optim.Optimizer,
                 schedule: torch.optim.lr_scheduler.LRScheduler, steps: int) -> float:
    model.train()
    order = torch.randperm(len(train_x), generator=generator)
    losses = []
    for step in range(steps):
        batch = order[step * config.batch_size : (step + 1) * config.batch_size]
        if len(batch) < 2:
            continue
        x = _augment(torch.from_numpy(train_x[batch.numpy()]), config, generator).to(device)
        loss = torch.nn.functional.cross_entropy(model(x), train_y[batch].to(device))

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


def _augment(inputs: torch.Tensor, config: ViewTrainingConfig, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast, horizontal flip and a blanked corner per image, then normalisation."""
    count, size = len(inputs), inputs.shape[-1]
    x = inputs.float().div(255.0)
    gain = 1.0 + (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * config.contrast
    offset = (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * config.brightness
    x = ((x - 0.5) * gain + 0.5 + offset).clamp(0.0, 1.0)

    flip = torch.rand(count, generator=generator) < 0.5
    x[flip] = x[flip].flip(-1)

    patch = max(1, int(size * config.erase))
    for index in torch.nonzero(torch.rand(count, generator=generator) < 0.5).flatten().tolist():
        top = 0 if torch.rand(1, generator=generator) < 0.5 else size - patch
        left = 0 if torch.rand(1, generator=generator) < 0.5 else size - patch
        x[index, top : top + patch, left : left + patch] = 0.0
    return ((x - config.mean) / config.std).unsqueeze(1)


def _predict(model: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 64) -> np.ndarray:
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            parts.append(torch.softmax(model(x[start : start + batch_size].to(device)).float(), dim=1).cpu())
    return torch.cat(parts).numpy()


def save_view_classifier(model: torch.nn.Module, path: Path) -> Path:
    """Save the state dict with floating-point tensors as float16, loadable with ``weights_only=True``."""
    state = {name: tensor.detach().cpu().half() if tensor.is_floating_point() else tensor.detach().cpu()
             for name, tensor in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    logger.info("saved view classifier weights %s (%.2f MB)", path, path.stat().st_size / 1e6)
    return path


def add_view_member(
    package: Path,
    weights: Path,
    *,
    classes: Sequence[str],
    architecture: str,
    input_size: int,
    min_confidence: float,
    name: str = MEMBER_NAME,
    metrics: dict[str, float | int | str] | None = None,
) -> Manifest:
    """Add a view classifier to an existing package folder, replacing any view classifier it has.

    The package is verified first and copied beside itself. The copy gets the weights file
    ``<name>.pt``, the new member with its SHA-256, and ``metrics`` merged into the manifest's
    metrics. It replaces the original only after :func:`inference.package.verify_package` accepts
    it. Other members, their weights and the operating points are left as they were.

    Raises
    ------
    inference.package.PackageError
        When the package does not verify before or after the change.
    pydantic.ValidationError
        When the new member is invalid, for example a class outside VIEW_CLASSES.
    """
    package = Path(package)
    manifest = verify_package(package)
    staging = Path(tempfile.mkdtemp(prefix=f".{package.name}-view-", dir=package.parent))
    try:
        shutil.copytree(package, staging, dirs_exist_ok=True)
        updated = _write_view_member(staging, manifest, weights, name=name, classes=tuple(classes),
                                     architecture=architecture, input_size=input_size, min_confidence=min_confidence,
                                     metrics=metrics or {})
        verify_package(staging)
        _swap(staging, package)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    logger.info("added view classifier %s to model package %s in %s", name, updated.identity, package)
    return verify_package(package)


def _write_view_member(folder: Path, manifest: Manifest, weights: Path, *, name: str, classes: tuple[str, ...],
                       architecture: str, input_size: int, min_confidence: float,
                       metrics: dict[str, float | int | str]) -> Manifest:
    for member in manifest.members:
        if member.kind == "view_classifier":
            (folder / member.weights_file).unlink(missing_ok=True)

    weights_file = f"{name}.pt"
    shutil.copyfile(weights, folder / weights_file)
    views = [label.split() for label in classes if label != OTHER_CLASS and len(label.split()) == 2]
    member = Member(
        name=name, kind="view_classifier", framework="timm", architecture=architecture,
        body_parts=tuple(sorted({part for part, _view in views})),
        views=tuple(sorted({view for _part, view in views})), input_size=input_size, in_chans=1,
        classes=classes, weight=1.0, min_confidence=min_confidence, weights_file=weights_file,
        sha256=sha256_of(folder / weights_file),
    )
    others = tuple(existing for existing in manifest.members if existing.kind != "view_classifier")
    updated = Manifest.model_validate({**manifest.model_dump(), "members": (*others, member),
                                       "metrics": {**manifest.metrics, **metrics}})
    text = json.dumps(updated.model_dump(mode="json"), indent=2, ensure_ascii=False)
    (folder / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
    return updated


def _swap(staging: Path, package: Path) -> None:
    """Put the verified staging folder where the package was, removing the old one."""
    retired = package.with_name(f".{package.name}-before-view")
    shutil.rmtree(retired, ignore_errors=True)
    package.rename(retired)
    staging.rename(package)
    shutil.rmtree(retired)


def build_view_member(package: Path, *, config: ViewTrainingConfig = ViewTrainingConfig()) -> Manifest:
    """Generate phantoms, train the view classifier and add it to ``package``.

    Returns
    -------
    The verified manifest of the updated package.
    """
    started = time.monotonic()
    train = generate_dataset(config.train_patients, seed=config.phantom_seed)
    validation = generate_dataset(config.validation_patients, seed=config.phantom_seed,
                                  first_patient=config.train_patients)
    logger.info("view phantoms ready: %d train, %d validation images (%.0f s)", len(train), len(validation),
                time.monotonic() - started)

    result = train_view_classifier(train, validation, config)
    with tempfile.TemporaryDirectory(prefix="pedfrac-view-") as folder:
        weights = save_view_classifier(result.model, Path(folder) / f"{MEMBER_NAME}.pt")
        metrics: dict[str, float | int | str] = {
            "view_classifier_validation_accuracy": round(result.validation_accuracy, 4),
            "view_classifier_training_data": (
                f"Synthetic phantoms only (inference.phantoms.generate_dataset, seed {config.phantom_seed}): "
                f"{len(train)} training images of {config.train_patients} patients and {len(validation)} validation "
                f"images of {config.validation_patients} other patients; {config.architecture} at "
                f"{config.input_size} px, best of {config.epochs} epochs (epoch {result.best_epoch}). "
                "Never trained or tested on radiographs of patients."
            ),
        }
        manifest = add_view_member(package, weights, classes=result.classes, architecture=config.architecture,
                                   input_size=config.input_size, min_confidence=config.min_confidence,
                                   metrics=metrics)
    logger.info("view classifier trained and added in %.0f s: validation accuracy %.3f", time.monotonic() - started,
                result.validation_accuracy)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m inference.training.view``: train the view classifier into a package; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.training.view",
        description="Train the view classifier on synthetic phantoms and add it to an existing model package.",
    )
    parser.add_argument("--package", type=Path, required=True, help="model package folder to add the view classifier to")
    parser.add_argument("--train-patients", type=int, default=ViewTrainingConfig.train_patients,
                        help="training patients, two images each (default: %(default)s)")
    parser.add_argument("--validation-patients", type=int, default=ViewTrainingConfig.validation_patients,
                        help="validation patients, two images each (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=ViewTrainingConfig.epochs, help="epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=ViewTrainingConfig.seed, help="training seed (default: %(default)s)")
    arguments = parser.parse_args(argv)

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ViewTrainingConfig(train_patients=arguments.train_patients,
                                validation_patients=arguments.validation_patients, epochs=arguments.epochs,
                                seed=arguments.seed)
    try:
        manifest = build_view_member(arguments.package, config=config)
    except (PackageError, ValueError, OSError) as error:
        logger.error("adding a view classifier to %s failed: %s", arguments.package, error)
        return 1

    logger.info("model package %s in %s now has view classifier %s", manifest.identity, arguments.package,
                MEMBER_NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
