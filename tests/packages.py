"""A model package with untrained weights: exercises loading and the ensemble without training."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from inference.package import sha256_of


def untrained_package(folder: Path, *, seed: int = 0) -> Path:
    """Write a valid package with random ConvNeXt weights and an untrained YOLO detector.

    Its outputs mean nothing; tests use it for plumbing, never for accuracy.
    """
    import timm
    from ultralytics.nn.tasks import DetectionModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    classifier = timm.create_model("convnext_atto", pretrained=False, num_classes=1, in_chans=1)
    torch.save({name: tensor.half() for name, tensor in classifier.state_dict().items()}, folder / "classifier.pt")

    detector = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    detector.names = {0: "fracture", 1: "fat_pad"}
    torch.save({"model": detector.half(), "train_args": {"imgsz": 256}}, folder / "detector.pt")

    common = {"body_parts": ["wrist", "elbow"], "views": ["AP", "LAT"]}
    manifest = {
        "format_version": 1,
        "name": "pedfrac-untrained-test",
        "version": "0.0.0",
        "intended_use": "Test fixture with random weights; its outputs mean nothing.",
        "training_data": "none",
        "members": [
            {"name": "classifier", "kind": "classifier", "framework": "timm", "architecture": "convnext_atto",
             "input_size": 128, "classes": ["fracture"], "weight": 0.6, "weights_file": "classifier.pt",
             "sha256": sha256_of(folder / "classifier.pt"), **common},
            {"name": "detector", "kind": "detector", "framework": "ultralytics", "architecture": "yolov8n",
             "input_size": 256, "classes": ["fracture", "fat_pad"], "weight": 0.4, "box_threshold": 0.01,
             "weights_file": "detector.pt", "sha256": sha256_of(folder / "detector.pt"), **common},
        ],
        "operating_points": [
            {"body_part": part, "view": view, "threshold": 0.5} for part in ("wrist", "elbow") for view in ("AP", "LAT")
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder
