"""The ``pedfrac`` commands of the method that makes the models.

In order: ``index`` (CSV manifests with patient-level splits), ``train-classifier``,
``train-detector``, ``cross-validate``, ``package`` (operating points on ``val``, metrics on
``test``), ``evaluate`` and ``gradcam``. ``make-phantoms`` writes synthetic radiographs in either
input layout, for trying the method without patient data. Heavy libraries load only when a command
runs, so ``pedfrac --help`` stays quick.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

METHOD_COMMANDS = ("index", "make-phantoms", "train-classifier", "train-detector", "cross-validate", "package",
                   "evaluate", "gradcam", "build-demo-package")
BODY_PARTS = ("wrist", "elbow")
VIEWS = ("AP", "LAT")
# Default classifier input sizes; the detector's default is 512 px.
DEFAULT_INPUT = {"wrist": 384, "elbow": 512}


def add_method_parsers(commands: argparse._SubParsersAction) -> None:
    """Add the method's commands to the ``pedfrac`` parser."""
    _index_parser(commands)
    _phantoms_parser(commands)
    _classifier_parser(commands.add_parser(
        "train-classifier", help="train a timm fracture classifier on CSV manifests",
        description="Train on the train split, stop early on the val split's AUROC and write a run folder."))
    _detector_parser(commands)
    crossval = commands.add_parser("cross-validate", help="k-fold cross-validation of a classifier by patient",
                                   description="Pool train and val, fold by patient and report mean and spread.")
    _classifier_parser(crossval)
    crossval.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    _package_parser(commands)
    _evaluate_parser(commands)
    _gradcam_parser(commands)
    _demo_parser(commands)


def _index_parser(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser(
        "index", help="index a data set into CSV manifests with patient-level splits",
        description="Write <out>/<body part>/<VIEW>_<split>.csv and index.json. The test split is drawn first, by "
                    "patient and stratified by label; the rest is split 8:2 into train and val by patient.")
    index.add_argument("--grazpedwri", type=Path, action="append", default=[], metavar="DIR",
                       help="a folder in GRAZPEDWRI-DX's layout (dataset.csv, images/, labels/); repeatable")
    index.add_argument("--dicom", type=Path, action="append", default=[], metavar="DIR",
                       help="a folder of DICOM files; needs --labels; repeatable")
    index.add_argument("--labels", type=Path, action="append", default=[], metavar="CSV",
                       help="labels of the matching --dicom folder: key (SOP or Study Instance UID), label[, boxes_file]")
    index.add_argument("--csv", type=Path, action="append", default=[], metavar="FILE",
                       help="a plain CSV with image_path, patient_id, label, body_part, view; repeatable")
    index.add_argument("--out", type=Path, required=True, help="folder for the CSV manifests")
    index.add_argument("--test-fraction", type=float, default=0.2, help="share of patients in test (default 0.2)")
    index.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of the remaining patients in val (default 0.2, so train:val is 8:2)")
    index.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")


def _phantoms_parser(commands: argparse._SubParsersAction) -> None:
    phantoms = commands.add_parser(
        "make-phantoms", help="write synthetic wrist and elbow radiographs with fracture labels and boxes",
        description="Draw one AP and one lateral phantom per patient and write them in GRAZPEDWRI-DX's layout or "
                    "as a DICOM folder with a labels CSV. Synthetic images only: for trying the method.")
    phantoms.add_argument("--out", type=Path, required=True, help="folder to write")
    phantoms.add_argument("--patients", type=int, default=100, help="number of patients (default 100)")
    phantoms.add_argument("--layout", choices=("grazpedwri", "dicom"), default="grazpedwri")
    phantoms.add_argument("--body-part", choices=BODY_PARTS, action="append", dest="body_parts",
                          help="body parts, assigned to patients in turn (default both)")
    phantoms.add_argument("--fracture-rate", type=float, default=0.5, help="share of patients with a fracture")
    phantoms.add_argument("--seed", type=int, default=0, help="seed of the phantoms (default 0)")
    phantoms.add_argument("--first-patient-number", type=int, default=7000,
                          help="number of the first patient in the file names (default 7000, above GRAZPEDWRI-DX's "
                               "patients); give each folder indexed together its own range")


def _classifier_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifests", type=Path, required=True, help="folder written by pedfrac index")
    parser.add_argument("--body-part", choices=BODY_PARTS, required=True)
    parser.add_argument("--views", nargs="+", choices=VIEWS, default=list(VIEWS), help="views to learn (default both)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write; its name becomes the member name")
    parser.add_argument("--force", action="store_true", help="replace the results already in --out")
    parser.add_argument("--architecture", default="convnext_atto",
                        help="timm model name, e.g. convnext_tiny, convnextv2_atto, swin_tiny_patch4_window7_224 "
                             "(default convnext_atto)")
    parser.add_argument("--input-size", type=int, help="square input in pixels (default 384 wrist, 512 elbow)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better val AUROC before stopping")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="random horizontal flips (default: on for elbow, off for wrist)")
    parser.add_argument("--boxes", action=argparse.BooleanOptionalAction, default=True,
                        help="train the auxiliary box head where records have boxes (default on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def _detector_parser(commands: argparse._SubParsersAction) -> None:
    detector = commands.add_parser(
        "train-detector", help="train an ultralytics YOLO detector on the manifests' boxes, offline",
        description="Fracture boxes, and fat pad boxes on elbow laterals, from the records' boxes files.")
    detector.add_argument("--manifests", type=Path, required=True, help="folder written by pedfrac index")
    detector.add_argument("--body-part", choices=BODY_PARTS, action="append", dest="body_parts",
                          help="body parts to learn (default both); repeatable")
    detector.add_argument("--views", nargs="+", choices=VIEWS, default=list(VIEWS))
    detector.add_argument("--out", type=Path, required=True, help="run folder to write")
    detector.add_argument("--force", action="store_true", help="replace a run already in --out")
    detector.add_argument("--model", default="yolov9t.yaml", help="ultralytics model YAML (default yolov9t.yaml)")
    detector.add_argument("--input-size", type=int, default=512)
    detector.add_argument("--epochs", type=int, default=100)
    detector.add_argument("--batch-size", type=int, default=16)
    detector.add_argument("--patience", type=int, default=30)
    detector.add_argument("--seed", type=int, default=0)
    detector.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def _package_parser(commands: argparse._SubParsersAction) -> None:
    package = commands.add_parser(
        "package", help="build a model package from training runs",
        description="Thresholds at the Youden index on val, metrics on test, SHA-256 per file.")
    package.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders of classifiers and detectors")
    package.add_argument("--manifests", type=Path, required=True, help="folder written by pedfrac index")
    package.add_argument("--out", type=Path, required=True, help="package folder to write")
    package.add_argument("--force", action="store_true", help="replace a package already in --out")
    package.add_argument("--name", required=True, help="package name, shown in every overlay and report")
    package.add_argument("--version", required=True)
    package.add_argument("--intended-use", help="intended use statement written into the manifest")
    package.add_argument("--classifier-weight", type=float, default=0.6)
    package.add_argument("--detector-weight", type=float, default=0.4)
    package.add_argument("--box-threshold", type=float, default=0.05,
                         help="detector boxes from this confidence on are kept (high-sensitivity tier)")
    package.add_argument("--box-threshold-high-specificity", type=float, default=0.25)
    package.add_argument("--view-classifier-from", type=Path, metavar="PACKAGE",
                         help="copy the view classifier of this package (e.g. models/demo)")
    package.add_argument("--report", type=Path, help="also write the test evaluation report here")
    package.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def _evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a model package on a manifest split",
        description="Per image, per view and per patient; every voting rule; ROC plots and Markdown tables.")
    evaluate.add_argument("--models", type=Path, required=True, help="model package folder")
    evaluate.add_argument("--manifests", type=Path, required=True, help="folder written by pedfrac index")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--tune-split", default="val", choices=("train", "val", "test", "none"),
                          help="split on which voting-rule thresholds are chosen (default val; none: the evaluated one)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for evaluation.md, .json, ROC plots, scores")
    evaluate.add_argument("--title", help="title of the report")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def _gradcam_parser(commands: argparse._SubParsersAction) -> None:
    gradcam = commands.add_parser("gradcam", help="write Grad-CAM review images for a manifest split")
    gradcam.add_argument("--models", type=Path, required=True, help="model package folder")
    gradcam.add_argument("--manifests", type=Path, required=True, help="folder written by pedfrac index")
    gradcam.add_argument("--split", default="test", choices=("train", "val", "test"))
    gradcam.add_argument("--out", type=Path, required=True)
    gradcam.add_argument("--language", choices=("ko", "en"), default="en", help="caption language (default en)")
    gradcam.add_argument("--limit", type=int, help="review only the first N images")
    gradcam.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def _demo_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "build-demo-package", help="build the demo model package on synthetic phantoms with the commands above",
        description="Run make-phantoms, index, train-classifier, train-detector and package on phantoms. "
                    "A view classifier in the existing package is carried over.")
    demo.add_argument("--out", type=Path, default=Path("models/demo"),
                      help="package folder to write (default: models/demo); an existing package is replaced")
    demo.add_argument("--seed", type=int, default=0, help="seed of the phantoms and of training (default 0)")
    demo.add_argument("--work-dir", type=Path, help="keep the phantoms, manifests and runs here")
    demo.add_argument("--report", type=Path, help="write the test evaluation report here (e.g. docs/demo-evaluation)")
    demo.add_argument("--print-commands", action="store_true", help="print the command lines and stop")


def run_method_command(args: argparse.Namespace) -> int:
    """Run one method command; print a one-line error and return 1 when the input is wrong."""
    handlers = {
        "index": _index, "make-phantoms": _make_phantoms, "train-classifier": _train_classifier,
        "train-detector": _train_detector, "cross-validate": _cross_validate, "package": _package,
        "evaluate": _evaluate, "gradcam": _gradcam, "build-demo-package": _build_demo,
    }
    from inference.offline import configure_ultralytics_offline, default_config_dir

    # Scoring loads detectors through ultralytics, whose first import must already be offline.
    configure_ultralytics_offline(default_config_dir())
    try:
        return handlers[args.command](args)
    except (ValueError, OSError, RuntimeError) as error:
        logger.error("pedfrac %s failed: %s", args.command, error)
        print(f"pedfrac {args.command}: {error}")
        return 1


def _index(args: argparse.Namespace) -> int:
    from inference.training.indexing import index_csv, index_dicom_folder, index_grazpedwri
    from inference.training.integrity import duplicate_images, patients_in_several_inputs, single_class_groups
    from inference.training.manifests import write_manifests
    from inference.training.splits import split_by_patient

    if len(args.dicom) != len(args.labels):
        raise ValueError(f"each --dicom folder needs its own --labels file, paired in the order given; found "
                         f"{len(args.dicom)} --dicom and {len(args.labels)} --labels")
    inputs = {f"--grazpedwri {root}": index_grazpedwri(root) for root in args.grazpedwri}
    inputs |= {f"--dicom {root}": index_dicom_folder(root, labels) for root, labels in zip(args.dicom, args.labels)}
    inputs |= {f"--csv {path}": index_csv(path) for path in args.csv}
    records = [record for found in inputs.values() for record in found]
    if not records:
        raise ValueError("no image was indexed; give --grazpedwri, --dicom with --labels, or --csv")

    duplicates = duplicate_images(records)
    if duplicates:
        example = " and ".join(record.image_path for record in duplicates[0][:2])
        count = f"{len(duplicates)} image is" if len(duplicates) == 1 else f"{len(duplicates)} images are"
        raise ValueError(f"{count} indexed more than once (same file content), for example "
                         f"{example}; a copy could land in train and another in test. Remove the duplicates first")
    shared = patients_in_several_inputs(inputs)
    if shared:
        _warn(f"{shared} patient ids occur in more than one input and are split as one patient each; if they are "
              "different people, give the inputs distinct ids (make-phantoms: --first-patient-number)")

    splits = split_by_patient(records, test_fraction=args.test_fraction, validation_fraction=args.val_fraction,
                              seed=args.seed)
    written = write_manifests(args.out, splits)
    for group in single_class_groups(splits):
        _warn(f"{group}: a classifier cannot train or be measured on one class")
    print(f"indexed {len(records)} images ({', '.join(f'{name}: {len(found)}' for name, found in inputs.items())}) "
          f"into {len(written) - 1} CSV manifests and index.json in {args.out}: "
          + ", ".join(f"{split} {len(items)}" for split, items in splits.items()))
    return 0


def _warn(message: str) -> None:
    logger.warning("%s", message)
    print(f"warning: {message}")


def _make_phantoms(args: argparse.Namespace) -> int:
    from inference.phantoms import generate_dataset
    from inference.training.phantom_data import write_dicom_folder, write_grazpedwri_layout

    phantoms = generate_dataset(args.patients, seed=args.seed, body_parts=tuple(args.body_parts or BODY_PARTS),
                                fracture_rate=args.fracture_rate, first_patient=args.first_patient_number)
    if args.layout == "grazpedwri":
        write_grazpedwri_layout(phantoms, args.out, first_number=args.first_patient_number)
        print(f"wrote {len(phantoms)} phantom images in GRAZPEDWRI-DX's layout to {args.out}")
    else:
        folder, labels = write_dicom_folder(phantoms, args.out)
        print(f"wrote {len(phantoms)} phantom DICOM files to {folder}; labels in {labels}")
    return 0


def classifier_config(args: argparse.Namespace) -> Any:
    """Build the :class:`ClassifierConfig` of ``train-classifier`` and ``cross-validate`` from their flags."""
    from inference.training.classifier import ClassifierConfig

    flip = args.flip if args.flip is not None else args.body_part == "elbow"
    return ClassifierConfig(
        architecture=args.architecture, input_size=args.input_size or DEFAULT_INPUT[args.body_part],
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
        flip=flip, seed=args.seed, device=None if args.device == "auto" else args.device,
    )


def _reject_existing_output(path: Path, description: str, force: bool) -> None:
    if path.exists() and not force:
        raise ValueError(f"{path.parent} already contains {description}; give --force to replace it, "
                         "or choose another --out")


def _train_classifier(args: argparse.Namespace) -> int:
    from inference.training.runs import RUN_FILE, train_classifier_run

    _reject_existing_output(args.out / RUN_FILE, "a training run", args.force)
    path = train_classifier_run(args.manifests, args.out, body_part=args.body_part, views=args.views,
                                config=classifier_config(args), use_boxes=args.boxes)
    print(f"classifier run written to {path.parent}")
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    from inference.training.detector import DetectorConfig
    from inference.training.runs import RUN_FILE, train_detector_run

    _reject_existing_output(args.out / RUN_FILE, "a training run", args.force)
    config = DetectorConfig(model_yaml=args.model, input_size=args.input_size, epochs=args.epochs,
                            batch_size=args.batch_size, patience=args.patience, seed=args.seed,
                            device=None if args.device == "auto" else args.device)
    path = train_detector_run(args.manifests, args.out, body_parts=args.body_parts or list(BODY_PARTS),
                              views=args.views, config=config)
    print(f"detector run written to {path.parent}")
    return 0


def _cross_validate(args: argparse.Namespace) -> int:
    from inference.training.crossval import cross_validate

    _reject_existing_output(args.out / "crossval.json", "a cross-validation", args.force)
    report = cross_validate(args.manifests, args.out, body_part=args.body_part, views=args.views,
                            config=classifier_config(args), folds=args.folds, use_boxes=args.boxes)
    print(f"cross-validation report written to {report}")
    return 0


def _package(args: argparse.Namespace) -> int:
    from inference.package import MANIFEST_NAME
    from inference.training.assembly import DEFAULT_INTENDED_USE, PackageSpec, assemble_package

    _reject_existing_output(args.out / MANIFEST_NAME, "a model package", args.force)
    spec = PackageSpec(name=args.name, version=args.version, intended_use=args.intended_use or DEFAULT_INTENDED_USE,
                       classifier_weight=args.classifier_weight, detector_weight=args.detector_weight,
                       box_threshold=args.box_threshold,
                       box_threshold_high_specificity=args.box_threshold_high_specificity, device=args.device)
    manifest = assemble_package(args.runs, args.manifests, args.out, spec,
                                view_classifier_from=args.view_classifier_from, report_dir=args.report)
    print(f"model package {manifest.identity} written to {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from inference.training.evaluation import evaluate, write_report
    from inference.training.manifests import read_manifests
    from inference.training.scoring import score_records

    records = read_manifests(args.manifests, args.split)
    if not records:
        raise ValueError(f"the {args.split} split in {args.manifests} is empty")
    table = score_records(args.models, records, device=args.device)
    tune = None
    if args.tune_split != "none" and args.tune_split != args.split:
        tune = score_records(args.models, read_manifests(args.manifests, args.tune_split), device=args.device)
    report = write_report(evaluate(table, tune=tune), table, args.out, title=args.title)
    print(f"evaluation report written to {report}")
    return 0


def _gradcam(args: argparse.Namespace) -> int:
    from inference.training.manifests import read_manifests
    from inference.training.review import export_gradcam

    records = read_manifests(args.manifests, args.split)
    index = export_gradcam(args.models, records, args.out, language=args.language, device=args.device,
                           limit=args.limit)
    print(f"Grad-CAM review images written to {args.out}; list in {index}")
    return 0


def _build_demo(args: argparse.Namespace) -> int:
    from inference.training.demo import DemoConfig, build_demo_package, demo_commands

    if args.print_commands:
        for command in demo_commands(args.work_dir or Path("demo-work"), args.out, seed=args.seed, config=DemoConfig(),
                                     report_dir=args.report):
            print("pedfrac " + " ".join(f'"{part}"' if " " in part else part for part in command))
        return 0

    manifest = build_demo_package(args.out, seed=args.seed, work_dir=args.work_dir, report_dir=args.report)
    print(f"demo package {manifest.identity} written to {args.out}")
    return 0
