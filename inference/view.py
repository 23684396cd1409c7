"""The view classifier: a small timm model that classifies body part and view from the pixels.

It decides only where the attributes are silent or disagree (see :mod:`inference.anatomy`), and
takes no part in the fracture vote. Its classes are ``"<body part> <view>"`` strings from
:data:`inference.package.VIEW_CLASSES` and, optionally, ``"other"`` for anything else.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference.package import OTHER_CLASS, Member
from inference.preprocess import model_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewDecision:
    """The view classifier's decision for one image.

    ``body_part`` and ``view`` are None when the probability of the best allowed class,
    ``confidence``, is below the member's ``min_confidence``. When the best class is ``"other"``,
    ``body_part`` is ``"other"`` and ``view`` None. ``probabilities`` maps every class to its
    softmax probability over all classes.
    """

    body_part: str | None
    view: str | None
    confidence: float
    probabilities: dict[str, float]
    member: str

    @property
    def decided(self) -> bool:
        return self.body_part is not None

    def source(self) -> str:
        """Return the decision's source as the report names it, e.g. ``view classifier views-mnv3 (p=0.97)``."""
        return f"view classifier {self.member} (p={self.confidence:.2f})"


class ViewClassifier:
    """A timm classifier with one logit per class of the member, in ``eval()`` mode on the chosen device."""

    def __init__(self, member: Member, weights: Path, device: torch.device) -> None:
        import timm

        if member.kind != "view_classifier" or member.min_confidence is None:
            raise ValueError(f"member {member.name!r} is a {member.kind}, not a view_classifier with min_confidence")
        self.member = member
        self.device = device
        self.model = timm.create_model(member.architecture, pretrained=False, num_classes=len(member.classes),
                                       in_chans=member.in_chans)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.model.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                                    for name, tensor in state.items()})
        self.model.eval().to(device)
        logger.info("loaded view classifier %s (%s, %d px, classes %s) on %s", member.name, member.architecture,
                    member.input_size, ", ".join(member.classes), device)

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Return the (N, classes) softmax probabilities of display images in [0, 1]."""
        if not images:
            return np.zeros((0, len(self.member.classes)), dtype=np.float32)

        normalization = self.member.normalization
        inputs = np.stack([model_input(image, self.member.input_size)[0] for image in images])
        array = (inputs.astype(np.float32) / 255.0 - normalization.mean) / normalization.std
        batch = torch.from_numpy(array)[:, None].repeat(1, self.member.in_chans, 1, 1).to(self.device)
        with torch.inference_mode():
            logits = self.model(batch).float()
        return torch.softmax(logits, dim=1).cpu().numpy()

    def decide(self, image: np.ndarray, *, body_part: str | None = None, view: str | None = None) -> ViewDecision:
        """Decide body part and view of one image, keeping to ``body_part`` or ``view`` where the attributes settle it."""
        return decide_view(self.probabilities([image])[0], self.member, body_part=body_part, view=view)


def decide_view(probabilities: np.ndarray, member: Member, *, body_part: str | None = None,
                view: str | None = None) -> ViewDecision:
    """Pick the most probable class that agrees with a known ``body_part`` or ``view``.

    The confidence is that class's probability renormalised over the allowed classes, so a body
    part known from the attributes does not lower the confidence in the view. ``"other"`` is
    allowed only when neither body part nor view is known.
    """
    classes = list(member.classes)
    allowed = [index for index, name in enumerate(classes) if _agrees(name, body_part, view)]
    scores = {name: float(probability) for name, probability in zip(classes, probabilities)}
    if not allowed:
        return ViewDecision(None, None, 0.0, scores, member.name)

    total = float(sum(probabilities[index] for index in allowed)) or 1.0
    best = max(allowed, key=lambda index: probabilities[index])
    confidence = float(probabilities[best]) / total
    if confidence < (member.min_confidence or 0.0):
        return ViewDecision(None, None, confidence, scores, member.name)

    if classes[best] == OTHER_CLASS:
        return ViewDecision(OTHER_CLASS, None, confidence, scores, member.name)
    part, chosen_view = classes[best].split()
    return ViewDecision(part, chosen_view, confidence, scores, member.name)


def _agrees(name: str, body_part: str | None, view: str | None) -> bool:
    """True when class ``name`` agrees with the body part and view that the attributes settle."""
    if name == OTHER_CLASS:
        return body_part is None and view is None
    part, class_view = name.split()
    return (body_part is None or part == body_part) and (view is None or class_view == view)
