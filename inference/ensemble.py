"""The ensemble: every member that reads an image's body part and view, combined by soft voting."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from pydicom.dataset import Dataset

from inference.anatomy import OBLIQUE, OTHER, TAGS, Anatomy, is_radiograph, not_radiograph_reason, resolve_anatomy
from inference.conformance import Policy, apply_policy, find_problems
from inference.findings import Box, ImageFinding, MemberOutput, ProcessingStep, SkippedImage, StudyFinding
from inference.members import Classifier, Detector
from inference.package import BODY_PARTS, VIEWS, Manifest, Member, verify_package
from inference.pairing import pair_views
from inference.pixels import PixelError, display_image, number_of_frames
from inference.preprocess import input_step, to_uint8
from inference.view import ViewClassifier, ViewDecision, decide_view

logger = logging.getLogger(__name__)


def choose_device(name: str) -> torch.device:
    """Resolve ``auto`` to CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch finds no CUDA device; use 'cpu' or 'auto'")
    return torch.device(name)


def soft_vote(outputs: Sequence[MemberOutput]) -> float:
    """Weighted mean of member probabilities, with the weights from the manifest."""
    total = sum(output.weight for output in outputs)
    return sum(output.weight * output.probability for output in outputs) / total


class Ensemble:
    """All members of a verified model package, loaded once on one device.

    Parameters
    ----------
    folder
        The model package folder; its checksums are verified before anything loads.
    device
        ``auto``, ``cpu`` or ``cuda``.
    gradcam
        Compute Grad-CAM heat maps from the classifiers.
    batch_size
        Most images a member reads in one forward pass.
    decode_workers
        Threads that decode pixel data when several images are read at once; 1 decodes in the
        calling thread.
    """

    def __init__(self, folder: Path, *, device: str = "auto", gradcam: bool = True, batch_size: int = 16,
                 decode_workers: int = 1) -> None:
        if batch_size < 1 or decode_workers < 1:
            raise ValueError(f"batch_size and decode_workers must be 1 or more, found {batch_size} and {decode_workers}")
        self.manifest: Manifest = verify_package(folder)
        self.device = choose_device(device)
        self.gradcam = gradcam
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.classifiers: dict[str, Classifier] = {}
        self.detectors: dict[str, Detector] = {}
        self.view_classifier: ViewClassifier | None = None

        for member in self.manifest.members:
            weights = folder / member.weights_file
            if member.kind == "classifier":
                self.classifiers[member.name] = Classifier(member, weights, self.device)
            elif member.kind == "view_classifier":
                self.view_classifier = ViewClassifier(member, weights, self.device)
            else:
                self.detectors[member.name] = Detector(member, weights, self.device)

        logger.info("ensemble %s ready on %s: %d classifiers, %d detectors, %s view classifier", self.manifest.identity,
                    self.device, len(self.classifiers), len(self.detectors), "a" if self.view_classifier else "no")

    def read_study(self, study_instance_uid: str, datasets: Sequence[Dataset], *,
                   policy: Policy = "warn") -> StudyFinding:
        """Read every radiograph of a study; everything else is listed as skipped with its reason.

        ``policy`` sets what happens to a radiograph whose attributes break the standard or
        disagree with each other (see :mod:`inference.conformance`).
        """
        return self.read_studies([(study_instance_uid, datasets)], policy=policy)[0]

    def read_studies(self, studies: Sequence[tuple[str, Sequence[Dataset]]], *,
                     policy: Policy = "warn") -> list[StudyFinding]:
        """Read several studies at once: each member runs on batches of images drawn from all of them.

        Each finding equals that of :meth:`read_study` on its study alone, up to the floating-point
        rounding that a different batch may bring. Every image read is held in memory at full
        resolution until the call returns, so the caller bounds how many studies it passes.
        """
        outcomes = self._read_images([dataset for _uid, datasets in studies for dataset in datasets], policy)
        findings = []
        start = 0
        for study_instance_uid, datasets in studies:
            own = outcomes[start : start + len(datasets)]
            start += len(datasets)
            images = tuple(outcome for outcome in own if isinstance(outcome, ImageFinding))
            skipped = tuple(outcome for outcome in own if isinstance(outcome, SkippedImage))
            findings.append(StudyFinding(
                study_instance_uid=study_instance_uid, images=images, skipped=skipped,
                model_name=self.manifest.name, model_version=self.manifest.version,
                pairs=pair_views(images, skipped, patients=_patients(datasets)),
            ))
        return findings

    def read_image(self, dataset: Dataset, *, policy: Policy = "warn") -> ImageFinding | SkippedImage:
        return self._read_images([dataset], policy)[0]

    def warm_up(self) -> None:
        """Run every member once on a blank image, so that the first study does not wait for it.

        The first call of a model pays for one-time setup: ultralytics builds its predictor, and
        torch selects kernels and allocates buffers for the forward and backward passes.
        """
        blank = np.zeros((64, 64), dtype=np.float32)
        for classifier in self.classifiers.values():
            classifier.predict(blank, gradcam=self.gradcam)
        for detector in self.detectors.values():
            detector.predict(blank)
        if self.view_classifier is not None:
            self.view_classifier.probabilities([blank])
        logger.info("ensemble %s warmed up", self.manifest.identity)

    def _read_images(self, datasets: Sequence[Dataset], policy: Policy) -> list[ImageFinding | SkippedImage]:
        """Read ``datasets`` with batched members; return one finding or skip reason each, in order."""
        outcomes: list[_Plan | ImageFinding | SkippedImage] = [self._plan(dataset, policy) for dataset in datasets]
        planned = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, _Plan)]
        decoded: dict[int, _Decoded] = {}
        for index, result in zip(planned, self._decode([outcomes[index] for index in planned])):
            if isinstance(result, SkippedImage):
                outcomes[index] = result
            else:
                decoded[index] = result

        self._decide_views(outcomes, decoded)
        readable = [index for index in decoded if isinstance(outcomes[index], _Plan)]
        votes = self._run_members([(outcomes[index], decoded[index].image) for index in readable])
        for index, vote in zip(readable, votes):
            outcomes[index] = self._finding(outcomes[index], decoded[index], vote)
        return outcomes

    def _plan(self, dataset: Dataset, policy: Policy) -> _Plan | SkippedImage:
        """Decide from the attributes alone whether and by which members ``dataset`` is read.

        A plan whose body part or view the attributes leave open, or state in contradiction, is
        marked for the view classifier when the package has one. The policy applies only to
        images that would be read, so a chest radiograph is skipped as such, not as non-conformant.
        """
        sop_uid = str(dataset.SOPInstanceUID)
        reason = _reason_not_to_read(dataset)
        if reason:
            return SkippedImage(sop_uid, reason)

        anatomy = resolve_anatomy(dataset)
        classify = self.view_classifier is not None and _needs_view_classifier(anatomy)
        plan = _Plan(dataset, sop_uid, anatomy, None, ())
        if not classify:
            plan = self._route(plan)
            if isinstance(plan, SkippedImage):
                return plan

        problems = [] if policy == "ignore" else find_problems(dataset) + _conflicts(anatomy, classify)
        rejected = apply_policy(problems, policy, sop_instance_uid=sop_uid)
        if rejected:
            return SkippedImage(sop_uid, rejected, anatomy.body_part, anatomy.view, anatomy.laterality)
        return replace(plan, problems=tuple(problems))

    def _route(self, plan: _Plan) -> _Plan | SkippedImage:
        """Give a plan whose body part and view are settled its operating point and members, or skip it."""
        anatomy, dataset, sop_uid = plan.anatomy, plan.dataset, plan.sop_uid
        if anatomy.body_part not in BODY_PARTS:
            found = f"Body Part Examined: {str(dataset.get('BodyPartExamined', '') or '').strip() or 'not stated'}"
            if anatomy.body_part_source not in (None, "BodyPartExamined"):
                found = f"{anatomy.body_part_source} says {anatomy.body_part_word!r}"
            return SkippedImage(sop_uid, f"not an elbow or wrist radiograph ({found})")
        if anatomy.view not in VIEWS:
            named = f"View Position: {str(dataset.get('ViewPosition', '') or 'not stated')}"
            if anatomy.view == OBLIQUE:
                named = f"{anatomy.view_source} says {anatomy.view_word!r}"
            return SkippedImage(sop_uid, f"{anatomy.body_part} view is not AP or lateral ({named})",
                                anatomy.body_part, anatomy.view, anatomy.laterality)

        threshold = self.manifest.threshold_for(anatomy.body_part, anatomy.view)
        if threshold is None:
            return SkippedImage(sop_uid, f"model package has no operating point for {anatomy.body_part} {anatomy.view}",
                                anatomy.body_part, anatomy.view, anatomy.laterality)
        # NOTE: the side comes from the attributes only. A burned-in L or R marker is not read from
        # the pixels, so an image whose attributes name no side is read unmirrored.
        return replace(plan, threshold=threshold, members=self.manifest.members_for(anatomy.body_part, anatomy.view),
                       flip=self.manifest.flips(anatomy.body_part, anatomy.laterality))

    def _decide_views(self, outcomes: list[_Plan | ImageFinding | SkippedImage], decoded: dict[int, _Decoded]) -> None:
        """Let the view classifier settle the plans marked for it, in one batch, then route them."""
        waiting = [index for index in decoded if isinstance(outcomes[index], _Plan) and outcomes[index].threshold is None]
        if not waiting:
            return

        probabilities = np.concatenate([self.view_classifier.probabilities([decoded[index].image for index in batch])
                                        for batch in _batches(waiting, self.batch_size)])
        for index, scores in zip(waiting, probabilities):
            plan = outcomes[index]
            decision = _decide(plan.anatomy, scores, self.view_classifier.member)
            decoded[index].steps.append(input_step(decision.member, decoded[index].image.shape,
                                                   self.view_classifier.member.input_size, flip=False))
            if not decision.decided:
                reason = _undecided_reason(plan.anatomy, decision, self.view_classifier.member.min_confidence or 0.0)
                outcomes[index] = SkippedImage(plan.sop_uid, reason,
                                               plan.anatomy.body_part, plan.anatomy.view, plan.anatomy.laterality)
                continue

            logger.info("view classifier %s decided %s: %s %s (p=%.2f)", decision.member, plan.sop_uid,
                        decision.body_part, decision.view, decision.confidence)
            outcomes[index] = self._route(replace(plan, anatomy=_with_decision(plan.anatomy, decision)))

    def _decode(self, plans: Sequence[_Plan]) -> list[_Decoded | SkippedImage]:
        """Return each plan's display image, decoding in ``decode_workers`` threads when there are several."""
        if self.decode_workers <= 1 or len(plans) < 2:
            return [_decode(plan) for plan in plans]
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="pedfrac-decode") as pool:
            return list(pool.map(_decode, plans))

    def _run_members(self, readable: Sequence[tuple[_Plan, np.ndarray]]) -> list[_Votes]:
        """Run each fracture member, in manifest order, on batches of the images it reads."""
        votes = [_Votes() for _ in readable]
        for member in self.manifest.members:
            chosen = [index for index, (plan, _image) in enumerate(readable) if member in plan.members]
            if member.kind == "classifier":
                self._run_classifier(member, readable, chosen, votes)
            elif member.kind == "detector":
                self._run_detector(member, readable, chosen, votes)
        return votes

    def _run_classifier(self, member: Member, readable: Sequence[tuple[_Plan, np.ndarray]], chosen: list[int],
                        votes: list[_Votes]) -> None:
        classifier = self.classifiers[member.name]
        # The heat map of an image comes from the first classifier, in manifest order, that reads it.
        mapped = [index for index in chosen if self.gradcam and votes[index].heatmap is None]
        unmapped = [index for index in chosen if index not in mapped]
        for group, gradcam in ((mapped, True), (unmapped, False)):
            for batch in _batches(group, self.batch_size):
                results = classifier.predict_batch([readable[index][1] for index in batch], gradcam=gradcam,
                                                   flips=[readable[index][0].flip for index in batch])
                for index, result in zip(batch, results):
                    votes[index].outputs.append(MemberOutput(member.name, member.kind, result.probability, member.weight))
                    if result.heatmap is not None:
                        votes[index].heatmap = result.heatmap

    def _run_detector(self, member: Member, readable: Sequence[tuple[_Plan, np.ndarray]], chosen: list[int],
                      votes: list[_Votes]) -> None:
        detector = self.detectors[member.name]
        for batch in _batches(chosen, self.batch_size):
            results = detector.predict_batch([readable[index][1] for index in batch],
                                             flips=[readable[index][0].flip for index in batch])
            for index, (probability, boxes) in zip(batch, results):
                votes[index].boxes += boxes
                votes[index].outputs.append(MemberOutput(member.name, member.kind, probability, member.weight))

    def _finding(self, plan: _Plan, decoded: _Decoded, votes: _Votes) -> ImageFinding:
        probability = soft_vote(votes.outputs)
        anatomy = plan.anatomy
        logger.info("read %s: %s %s p=%.3f threshold=%.3f", plan.sop_uid, anatomy.body_part, anatomy.view,
                    probability, plan.threshold)

        steps = list(decoded.steps)
        if plan.flip:
            canonical = self.manifest.canonical_side[anatomy.body_part]
            steps.append(ProcessingStep.of("mirror to canonical side", laterality=anatomy.laterality,
                                           laterality_source=anatomy.laterality_source, canonical_side=canonical))
        steps += [input_step(member.name, decoded.image.shape, member.input_size, flip=plan.flip)
                  for member in plan.members]
        return ImageFinding(
            sop_instance_uid=plan.sop_uid, body_part=anatomy.body_part, view=anatomy.view,
            laterality=anatomy.laterality, view_source=anatomy.view_source or "unknown",
            probability=probability, threshold=plan.threshold, positive=probability >= plan.threshold,
            members=tuple(votes.outputs), boxes=votes.boxes, display=to_uint8(decoded.image), heatmap=votes.heatmap,
            body_part_source=anatomy.body_part_source or "unknown", steps=tuple(steps),
            nonconformance=plan.problems,
        )


@dataclass(frozen=True)
class _Plan:
    """An image that will be read: its data set, anatomy, operating point and members.

    ``threshold`` is None while the view classifier has still to settle body part or view.
    ``flip`` mirrors the image to the package's canonical side before every member.
    ``problems`` are the non-conformance findings the policy let through.
    """

    dataset: Dataset
    sop_uid: str
    anatomy: Anatomy
    threshold: float | None
    members: tuple[Member, ...]
    flip: bool = False
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Decoded:
    """A display image and the pixel steps that made it."""

    image: np.ndarray
    steps: list[ProcessingStep]


@dataclass
class _Votes:
    """The members' outputs for one image so far."""

    outputs: list[MemberOutput] = field(default_factory=list)
    boxes: tuple[Box, ...] = ()
    heatmap: np.ndarray | None = None


def _decode(plan: _Plan) -> _Decoded | SkippedImage:
    steps: list[ProcessingStep] = []
    try:
        return _Decoded(display_image(plan.dataset, steps=steps), steps)
    except PixelError as error:
        anatomy = plan.anatomy
        return SkippedImage(plan.sop_uid, str(error), anatomy.body_part, anatomy.view, anatomy.laterality)


def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[start : start + size] for start in range(0, len(indices), size)]


def _reason_not_to_read(dataset: Dataset) -> str | None:
    if not is_radiograph(dataset):
        return not_radiograph_reason(dataset)
    if "PixelData" not in dataset:
        return "Pixel Data (7FE0,0010) is missing"

    try:
        frames = number_of_frames(dataset)
    except PixelError as error:
        return str(error)
    if frames > 1:
        # NOTE: the pixel pipeline reads any frame (display_image's frame argument), but the
        # overlay, presentation state and SR regions reference whole single-frame images, so a
        # multi-frame radiograph is refused here rather than reported with wrong references.
        return (f"Number of Frames (0028,0008) is {frames}: multi-frame radiographs are not read, because the "
                "overlay, presentation state and report reference single-frame images; send each view as its "
                "own instance")
    return None


def _patients(datasets: Sequence[Dataset]) -> dict[str, str]:
    """Return (0010,0020) PatientID per SOP Instance UID, to keep two patients' images apart when pairing."""
    return {str(dataset.SOPInstanceUID): str(dataset.get("PatientID", "") or "") for dataset in datasets}


def _needs_view_classifier(anatomy: Anatomy) -> bool:
    """True when the attributes leave body part or view open or contradict themselves about it.

    An image whose attributes agree that it is another body part, or an oblique view, is not
    classified, because the classifier has classes only for elbow and wrist AP and lateral views.
    """
    # NOTE: the classifier has no "other anatomy" class, so an image of another body part whose
    # attributes are all silent is classified as an elbow or wrist view when its confidence is high.
    body_open = anatomy.body_part is None or bool(anatomy.body_part_conflicts)
    view_open = anatomy.view is None or bool(anatomy.view_conflicts)
    if not body_open and anatomy.body_part == OTHER:
        return False
    if not view_open and anatomy.view == OBLIQUE:
        return False
    return body_open or view_open


def _conflicts(anatomy: Anatomy, classified: bool) -> list[str]:
    """Return the attribute conflicts that precedence settles: all but those the view classifier settles."""
    conflicts = list(anatomy.laterality_conflicts)
    if not classified:
        conflicts = list(anatomy.body_part_conflicts) + list(anatomy.view_conflicts) + conflicts
    return conflicts


def _decide(anatomy: Anatomy, scores: np.ndarray, member: Member) -> ViewDecision:
    """Decide with the view classifier, keeping to whatever the attributes settle without conflict."""
    settled_body = anatomy.body_part if anatomy.body_part in BODY_PARTS and not anatomy.body_part_conflicts else None
    settled_view = anatomy.view if anatomy.view in VIEWS and not anatomy.view_conflicts else None
    return decide_view(scores, member, body_part=settled_body, view=settled_view)


def _with_decision(anatomy: Anatomy, decision: ViewDecision) -> Anatomy:
    """Return ``anatomy`` with the body part and view the classifier decided, where the attributes did not."""
    body_settled = anatomy.body_part in BODY_PARTS and not anatomy.body_part_conflicts
    view_settled = anatomy.view in VIEWS and not anatomy.view_conflicts
    return replace(
        anatomy,
        body_part=anatomy.body_part if body_settled else decision.body_part,
        body_part_source=anatomy.body_part_source if body_settled else decision.source(),
        body_part_word=anatomy.body_part_word if body_settled else decision.body_part,
        view=anatomy.view if view_settled else decision.view,
        view_source=anatomy.view_source if view_settled else decision.source(),
        view_word=anatomy.view_word if view_settled else None,
    )


def _undecided_reason(anatomy: Anatomy, decision: ViewDecision, minimum: float) -> str:
    """Say why neither the attributes nor the view classifier settled body part and view."""
    said = "; ".join(anatomy.body_part_conflicts + anatomy.view_conflicts)
    if not said:
        unnamed = "body part" if anatomy.body_part is None else "view"
        said = f"no attribute names the {unnamed}"
    return (f"body part and view could not be determined: {said}, and view classifier {decision.member} has "
            f"confidence {decision.confidence:.2f}, below its minimum {minimum:.2f}")
