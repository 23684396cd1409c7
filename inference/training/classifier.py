"""Training of a timm fracture classifier: one logit, whose sigmoid is the fracture probability.

Every input goes through :func:`inference.preprocess.model_input`, the preprocessing the service
applies, then is scaled to [0, 1] and normalised with the manifest's mean and standard deviation.
"""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from tqdm import tqdm

from inference.members import create_timm_model
from inference.preprocess import Letterbox, letterbox_geometry, model_input

logger = logging.getLogger(__name__)

Box = tuple[str, float, float, float, float]
LOCALISED_LABELS = ("fracture", "fat_pad")


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyper-parameters of one classifier training run.

    ``brightness`` and ``contrast`` are the maximum random offset and relative gain applied to
    inputs in [0, 1], the grey counterpart of an HSV value shift; ``flip`` mirrors half of the
    training images left to right. Training stops after ``patience`` epochs without a better
    validation AUROC. ``device`` is ``"cpu"``, ``"cuda"`` (mixed precision) or None for CUDA when
    available.
    """

    architecture: str = "convnext_atto"
    input_size: int = 384
    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    patience: int = 3
    brightness: float = 0.1
    contrast: float = 0.15
    flip: bool = True
    mean: float = 0.5
    std: float = 0.25
    localisation_weight: float = 1.0
    seed: int = 0
    device: str | None = None


@dataclass(frozen=True)
class EpochLog:
    """Losses and validation AUROC after one epoch."""

    epoch: int
    train_loss: float
    validation_loss: float
    validation_auroc: float
    seconds: float


@dataclass(frozen=True)
class PreparedSet:
    """Model inputs of a set of images, ready for training: only these stay in memory, not the images.

    ``inputs`` is (N, size, size) uint8 after CLAHE and letterbox; ``masks`` marks the pixels of
    fracture and fat pad boxes in the same geometry, or is None when the set has no boxes.
    """

    inputs: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class ClassifierResult:
    """The trained model with the weights of its best validation epoch, in eval mode on the CPU."""

    model: torch.nn.Module
    best_epoch: int
    best_auroc: float
    history: list[EpochLog] = field(default_factory=list)


def prepare_inputs(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Preprocess display images in [0, 1] into an (N, size, size) uint8 array of model inputs."""
    return np.stack([model_input(image, size)[0] for image in images])


def box_masks(images: Sequence[np.ndarray], boxes: Sequence[Sequence[Box]], size: int) -> np.ndarray:
    """Rasterise each image's fracture and fat pad boxes into an (N, size, size) uint8 mask of the model input."""
    masks = np.zeros((len(images), size, size), dtype=np.uint8)
    for index, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
        masks[index] = _mask(image_boxes, letterbox_geometry(image.shape, size))
    return masks


def _mask(boxes: Sequence[Box], geometry: Letterbox) -> np.ndarray:
    """Mark the input pixels of the fracture and fat pad boxes, given in source pixels."""
    mask = np.zeros((geometry.size, geometry.size), dtype=np.uint8)
    for label, x0, y0, x1, y1 in boxes:
        if label not in LOCALISED_LABELS:
            continue
        if geometry.flipped:
            x0, x1 = geometry.source_columns - x1, geometry.source_columns - x0
        left, top = (np.array([x0, y0]) * geometry.scale + [geometry.pad_x, geometry.pad_y]).astype(int)
        right, bottom = np.ceil(np.array([x1, y1]) * geometry.scale + [geometry.pad_x, geometry.pad_y]).astype(int)
        mask[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = 1
    return mask


def normalise(inputs: np.ndarray | torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Convert uint8 model inputs (N, H, W) into a float tensor (N, 1, H, W) for the network."""
    tensor = torch.as_tensor(inputs).float().div(255.0)
    return ((tensor - mean) / std).unsqueeze(1)


def prepare_set(
    items: Iterable[tuple[np.ndarray, Sequence[Box]]],
    labels: Sequence[bool],
    size: int,
    *,
    with_masks: bool = False,
    flips: Sequence[bool] | None = None,
    description: str = "preparing",
) -> PreparedSet:
    """Turn (display image, boxes) pairs into a :class:`PreparedSet`, one image at a time.

    ``items`` may be a generator that loads each image from disk, so a set of thousands of
    radiographs never sits in memory at full resolution. ``flips`` mirrors images to the canonical
    side, as the service does; their box masks are mirrored with them. Without ``with_masks`` the
    boxes are ignored.
    """
    count = len(labels)
    inputs = np.zeros((count, size, size), dtype=np.uint8)
    masks = np.zeros((count, size, size), dtype=np.uint8) if with_masks else None
    received = 0
    for index, (image, boxes) in enumerate(tqdm(items, total=count, desc=description, unit="image",
                                                disable=None, leave=False)):
        if index >= count:
            raise ValueError(f"received more images than the {count} labels")
        flip = bool(flips[index]) if flips is not None else False
        inputs[index], geometry = model_input(image, size, flip=flip)
        if masks is not None:
            masks[index] = _mask(boxes, geometry)
        received = index + 1

    if received != count:
        raise ValueError(f"received {received} images for {count} labels")
    return PreparedSet(inputs=inputs, labels=np.asarray(labels, dtype=bool), masks=masks)


def create_classifier(architecture: str, input_size: int) -> torch.nn.Module:
    """Build an untrained timm model with one grey input channel and one fracture logit."""
    return create_timm_model(architecture, num_classes=1, in_chans=1, input_size=input_size)


def train_classifier(
    train_images: Sequence[np.ndarray],
    train_labels: Sequence[bool],
    validation_images: Sequence[np.ndarray],
    validation_labels: Sequence[bool],
    config: ClassifierConfig = ClassifierConfig(),
    *,
    train_boxes: Sequence[Sequence[Box]] | None = None,
) -> ClassifierResult:
    """Train a fracture classifier from scratch and keep the epoch with the best validation AUROC.

    With ``train_boxes``, a 1x1 convolution on the last feature map learns to mark the cells
    inside fracture and fat pad boxes, and its loss (times ``config.localisation_weight``) joins
    the classification loss. This auxiliary head is discarded after training, so the saved model
    is the plain timm model.

    Parameters
    ----------
    train_images, validation_images
        Display images, 2-D float arrays in [0, 1] with bone bright.
    train_labels, validation_labels
        True where the image shows a fracture. Both sets need both classes.
    config
        Hyper-parameters. The same seed, data, device and thread count give the same weights.
    train_boxes
        Boxes (label, x0, y0, x1, y1) in source pixels per training image, or None.

    Returns
    -------
    The model with its best weights, on the CPU in eval mode, and the per-epoch history.
    """
    size = config.input_size
    boxes = train_boxes if train_boxes is not None else [()] * len(train_images)
    train = prepare_set(zip(train_images, boxes), train_labels, size, with_masks=train_boxes is not None,
                        description="training inputs")
    validation = prepare_set(((image, ()) for image in validation_images), validation_labels, size,
                             description="validation inputs")
    return train_prepared(train, validation, config)


def train_prepared(train: PreparedSet, validation: PreparedSet, config: ClassifierConfig = ClassifierConfig()) -> ClassifierResult:
    """Train on inputs made by :func:`prepare_set` at ``config.input_size``; see :func:`train_classifier`.

    With ``train.masks``, the box head of :func:`train_classifier` joins the training.
    """
    _check_labels("training", train.labels)
    _check_labels("validation", validation.labels)
    if train.inputs.shape[1:] != (config.input_size, config.input_size):
        raise ValueError(f"inputs are {train.inputs.shape[1:]} px, but the configuration expects {config.input_size} px; "
                         "prepare them with prepare_set at config.input_size")
    device = _device(config.device)
    validation_x = normalise(validation.inputs, config.mean, config.std)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_classifier(config.architecture, config.input_size).to(device)
        head = None if train.masks is None else torch.nn.Conv2d(model.num_features, 1, kernel_size=1).to(device)
        run = _Run(
            model=model, head=head, config=config, device=device,
            generator=torch.Generator().manual_seed(config.seed),
            train_x=train.inputs, train_y=torch.tensor(train.labels.astype(np.float32)), train_masks=train.masks,
        )
        return _fit(run, validation_x, validation.labels)


@dataclass
class _Run:
    """State of one training run: the model, its optional localisation head, data and optimiser."""

    model: torch.nn.Module
    head: torch.nn.Module | None
    config: ClassifierConfig
    device: torch.device
    generator: torch.Generator
    train_x: np.ndarray
    train_y: torch.Tensor
    train_masks: np.ndarray | None
    steps_per_epoch: int = 0
    optimizer: torch.optim.Optimizer | None = None
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None
    pos_weight: torch.Tensor | None = None

    def __post_init__(self) -> None:
        config = self.config
        self.steps_per_epoch = max(1, len(self.train_x) // config.batch_size)
        parameters = list(self.model.parameters()) + ([] if self.head is None else list(self.head.parameters()))
        self.optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=config.learning_rate, total_steps=config.epochs * self.steps_per_epoch,
            pct_start=config.warmup_fraction,
        )
        positives = float(self.train_y.sum())
        self.pos_weight = torch.tensor([(len(self.train_y) - positives) / positives], device=self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")


def _fit(run: _Run, validation_x: torch.Tensor, validation_y: np.ndarray) -> ClassifierResult:
    config, model = run.config, run.model
    result = ClassifierResult(model=model, best_epoch=0, best_auroc=float("-inf"))
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, config.epochs + 1):
        started = time.monotonic()
        train_loss = _train_epoch(run)
        probabilities, validation_loss = _evaluate(model, validation_x, validation_y, run.device, run.pos_weight)
        auroc = float(roc_auc_score(validation_y, probabilities))
        log = EpochLog(epoch, train_loss, validation_loss, auroc, time.monotonic() - started)
        result.history.append(log)
        logger.info(
            "%s epoch %d/%d: train loss %.4f, validation loss %.4f, validation AUROC %.3f (%.0f s)",
            config.architecture, epoch, config.epochs, train_loss, validation_loss, auroc, log.seconds,
        )

        if auroc > result.best_auroc:
            result.best_epoch, result.best_auroc = epoch, auroc
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - result.best_epoch >= config.patience and epoch < config.epochs:
            logger.info("early stop after epoch %d: best validation AUROC %.3f at epoch %d",
                        epoch, result.best_auroc, result.best_epoch)
            break

    model.load_state_dict(best_state)
    result.model = model.cpu().eval()
    return result


def _train_epoch(run: _Run) -> float:
    """Run one epoch and return the mean training loss (classification plus localisation)."""
    config, device = run.config, run.device
    run.model.train()
    order = torch.randperm(len(run.train_x), generator=run.generator)
    losses = []
    for step in tqdm(range(run.steps_per_epoch), desc=f"{config.architecture} epoch", unit="batch", disable=None, leave=False):
        batch = order[step * config.batch_size : (step + 1) * config.batch_size].numpy()
        masks = None if run.train_masks is None else torch.from_numpy(run.train_masks[batch])
        x, masks = _augment(torch.from_numpy(run.train_x[batch]), masks, config, run.generator)
        y = run.train_y[batch].to(device)

        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            features = run.model.forward_features(x.to(device))
            logits = run.model.forward_head(features)[:, 0]
            cells = None if run.head is None else run.head(_channels_first(run.model, features))[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=run.pos_weight)
        if cells is not None:
            loss = loss + config.localisation_weight * _localisation_loss(cells.float(), masks.to(device))

        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.schedule.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


def _channels_first(model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Return feature maps as (N, C, H, W); Swin's come channels last."""
    return features.permute(0, 3, 1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else features


def _localisation_loss(cells: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each feature-map cell against "a box touches this cell"."""
    target = torch.nn.functional.adaptive_max_pool2d(masks.float().unsqueeze(1), cells.shape[-2:])[:, 0]
    return torch.nn.functional.binary_cross_entropy_with_logits(cells, target)


def _augment(inputs: torch.Tensor, masks: torch.Tensor | None, config: ClassifierConfig,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply random brightness, contrast and (with ``config.flip``) horizontal flip per image, then normalise.

    A flipped image's mask is flipped with it.
    """
    count = len(inputs)
    x = inputs.float().div(255.0)
    gain = 1.0 + (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * config.contrast
    offset = (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * config.brightness
    x = ((x - 0.5) * gain + 0.5 + offset).clamp(0.0, 1.0)

    flip = (torch.rand(count, generator=generator) < 0.5) & config.flip
    x[flip] = x[flip].flip(-1)
    if masks is not None:
        masks = masks.clone()
        masks[flip] = masks[flip].flip(-1)
    return ((x - config.mean) / config.std).unsqueeze(1), masks


def _evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: np.ndarray, device: torch.device, pos_weight: torch.Tensor
) -> tuple[np.ndarray, float]:
    logits = _logits(model, x, device)
    target = torch.from_numpy(y.astype(np.float32))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight.cpu())
    return torch.sigmoid(logits).numpy(), float(loss)


def _logits(model: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 32) -> torch.Tensor:
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            parts.append(model(x[start : start + batch_size].to(device))[:, 0].float().cpu())
    return torch.cat(parts)


def predict_probabilities(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    *,
    input_size: int,
    mean: float = 0.5,
    std: float = 0.25,
    device: str | None = None,
) -> np.ndarray:
    """Return the fracture probability of each display image, preprocessed as the service does."""
    return _probabilities(model, prepare_inputs(images, input_size), mean, std, device)


def predict_prepared(model: torch.nn.Module, prepared: PreparedSet, config: ClassifierConfig) -> np.ndarray:
    """Return the fracture probability of each prepared input, with the normalisation of ``config``."""
    return _probabilities(model, prepared.inputs, config.mean, config.std, config.device)


def _probabilities(model: torch.nn.Module, inputs: np.ndarray, mean: float, std: float,
                   device: str | None) -> np.ndarray:
    """Run uint8 model inputs through ``model`` on ``device`` and return their sigmoid probabilities."""
    target = _device(device)
    model.to(target)
    probabilities = torch.sigmoid(_logits(model, normalise(inputs, mean, std), target)).numpy()
    model.cpu()
    return probabilities


def save_classifier(model: torch.nn.Module, path: Path) -> Path:
    """Save the state dict with floating-point tensors as float16, loadable with ``weights_only=True``."""
    state = {
        name: tensor.detach().cpu().half() if tensor.is_floating_point() else tensor.detach().cpu()
        for name, tensor in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    logger.info("saved classifier weights %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def load_classifier(path: Path, architecture: str, input_size: int) -> torch.nn.Module:
    """Load weights written by :func:`save_classifier` into a float32 model in eval mode."""
    model = create_classifier(architecture, input_size)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in state.items()})
    return model.float().eval()


def _check_labels(name: str, labels: Sequence[bool]) -> None:
    values = set(bool(label) for label in labels)
    if values != {False, True}:
        raise ValueError(f"{name} labels need fractures and normals, found only {sorted(values)} in {len(labels)} images")


def _device(requested: str | None) -> torch.device:
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
