"""Training: classifier epochs on phantoms in images/s, against bare training steps on the same device.

For the device machine, and it runs anywhere: ``--device auto`` takes CUDA when torch finds it (the
classifier then trains in mixed precision) and the CPU otherwise. Two rates are measured in the same
run on the same model: :func:`inference.training.classifier.train_prepared` for a few epochs
(augmentation, box head, validation after each epoch, as ``pedfrac train-classifier`` trains), and
bare steps (forward, loss, backward, optimiser step) on random tensors of the same shape, the
ceiling. The ratio bare / pedfrac says how much the training loop adds around the model.

NOTE: the CUDA path of this script is untested; no CUDA figure has been measured with it.

    .venv/bin/python -m bench.training --patients 200 --architecture convnext_atto --input-size 384
"""
from __future__ import annotations

import logging
import time

from bench.common import (
    base_parser,
    configure_logging,
    describe_machine,
    load_average,
    print_facts,
    print_table,
    run_main,
    spread,
)

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None):  # noqa: ANN201 - argparse.Namespace
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when torch finds it, else the CPU (default)")
    parser.add_argument("--patients", type=int, default=100, help="phantom patients, two views each (default 100)")
    parser.add_argument("--architecture", default="convnext_atto", help="timm model (default convnext_atto)")
    parser.add_argument("--input-size", type=int, default=256, help="square input in pixels (default 256)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (default 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    from inference.phantoms import generate_dataset
    from inference.training.classifier import ClassifierConfig, prepare_set, train_prepared

    args = parse_args(argv)
    configure_logging(args.verbose)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    phantoms = generate_dataset(args.patients, seed=9, body_parts=("wrist",))
    split = len(phantoms) * 4 // 5
    train, validation = (
        prepare_set(((p.image, p.boxes) for p in part), [p.fracture for p in part], args.input_size, with_masks=True)
        for part in (phantoms[:split], phantoms[split:])
    )
    config = ClassifierConfig(architecture=args.architecture, input_size=args.input_size, epochs=args.epochs,
                              patience=args.epochs, batch_size=args.batch_size, device=device)

    started = time.perf_counter()
    result = train_prepared(train, validation, config)
    _synchronise(device)
    pedfrac_seconds = time.perf_counter() - started
    epochs = len(result.history)
    pedfrac_rate = epochs * (len(train) // args.batch_size) * args.batch_size / pedfrac_seconds

    bare_rates = [_bare_rate(args, device, len(train)) for _ in range(2)]
    rows = [
        ["pedfrac train_prepared (with validation each epoch)", f"{pedfrac_rate:.1f}"],
        ["bare steps, same model and batch", spread(bare_rates, digits=1)],
        ["bare / pedfrac", spread([rate / pedfrac_rate for rate in bare_rates])],
    ]
    print_facts("Machine", describe_machine() + [
        ("device", device), ("model", f"{args.architecture} at {args.input_size} px, batch {args.batch_size}"),
        ("mixed precision", "yes" if device == "cuda" else "no"), ("training images", str(len(train))),
        ("epochs", str(epochs)), ("load average at end", load_average()),
        ("validation AUROC after the last epoch", f"{result.history[-1].validation_auroc:.3f}"),
    ])
    print_table("Training throughput, images/s", ["path", "images/s"], rows)
    return 0


def _bare_rate(args, device: str, images: int) -> float:  # noqa: ANN001 - argparse.Namespace
    """Images/s of forward, loss, backward and optimiser step on random inputs, one epoch's worth."""
    import torch

    from inference.training.classifier import create_classifier

    model = create_classifier(args.architecture, args.input_size).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda")
    batch = torch.randn(args.batch_size, 1, args.input_size, args.input_size, device=device)
    target = torch.randint(0, 2, (args.batch_size,), device=device).float()
    steps = max(1, images // args.batch_size)

    started = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=device == "cuda"):
            logits = model(batch)[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
    _synchronise(device)
    return steps * args.batch_size / (time.perf_counter() - started)


def _synchronise(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    raise SystemExit(run_main(main))
