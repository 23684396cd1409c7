"""Run ultralytics with no network access: no DNS look-ups, downloads, telemetry or tracking.

Call :func:`configure_ultralytics_offline` before the first ``import ultralytics`` of the process,
because ultralytics reads ``YOLO_OFFLINE`` and ``YOLO_CONFIG_DIR`` once, at import.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")

# Settings keys of ultralytics 8.4.190 that enable network traffic or third-party loggers.
# Keys missing from another version are skipped, because ``settings.update`` raises KeyError on them.
DISABLED_SETTINGS = (
    "sync",
    "clearml",
    "comet",
    "dvc",
    "mlflow",
    "raytune",
    "tensorboard",
    "wandb",
    "vscode_msg",
    "openvino_msg",
)


def default_config_dir() -> Path:
    """Return the per-user folder for ultralytics settings: ``$XDG_CACHE_HOME/pedfrac/ultralytics``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pedfrac" / "ultralytics"


def configure_ultralytics_offline(config_dir: Path, *, threads: int | None = None) -> None:
    """Configure ultralytics so that importing, training and predicting stay off the network.

    Sets ``YOLO_OFFLINE=1`` and ``YOLO_CONFIG_DIR``, places a TrueType font where ultralytics
    looks for ``Arial.ttf`` (else it downloads one when it draws labels), imports ultralytics, and
    turns off telemetry (``sync``), the Platform upload and the third-party logger integrations.

    Parameters
    ----------
    config_dir
        Writable folder for the ultralytics settings file, fonts and default run folders.
    threads
        CPU threads for torch. ``None`` means one per logical CPU. Ultralytics would otherwise set
        ``OMP_NUM_THREADS=1`` at import and ``cpu_count - 1`` threads at training.

    Raises
    ------
    RuntimeError
        When ultralytics was imported earlier in this process without ``YOLO_OFFLINE=1``, so its
        import-time network check and settings location can no longer be changed.
    """
    config_dir = Path(config_dir).expanduser().resolve()
    threads = threads or os.cpu_count() or 1
    already_imported = "ultralytics" in sys.modules
    if already_imported and os.environ.get("YOLO_OFFLINE") != "1":
        raise RuntimeError(
            "ultralytics was imported before configure_ultralytics_offline(); call it before the first import of ultralytics"
        )

    _set_environment(config_dir, threads)
    if not already_imported:
        _install_fonts(config_dir / "Ultralytics")

    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import settings
    from ultralytics.utils import USER_CONFIG_DIR

    if already_imported:
        # The first call fixed the settings folder at import, so the fonts go where ultralytics looks.
        _install_fonts(Path(USER_CONFIG_DIR))
        config_dir = Path(USER_CONFIG_DIR).parent
    _update_settings(settings, config_dir)
    _set_threads(torch_utils, threads)
    logger.info("ultralytics configured offline: settings in %s, %d CPU threads", USER_CONFIG_DIR, threads)


def _set_environment(config_dir: Path, threads: int) -> None:
    os.environ["YOLO_OFFLINE"] = "1"
    if "ultralytics" not in sys.modules:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))

    # The Platform callback uploads a training run whenever this key is set.
    if os.environ.pop("ULTRALYTICS_API_KEY", None) is not None:
        logger.warning("ULTRALYTICS_API_KEY removed from the environment: training runs stay offline")


def _install_fonts(folder: Path) -> None:
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not source.is_file():
        raise FileNotFoundError(f"font {source} not found; matplotlib ships it, so reinstall matplotlib")

    folder.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = folder / name
        if not target.is_file():
            shutil.copyfile(source, target)


def _update_settings(settings: dict, config_dir: Path) -> None:
    changes: dict[str, object] = {key: False for key in DISABLED_SETTINGS if key in settings}
    changes["api_key"] = ""

    # Without these, ultralytics writes runs and datasets beside the git checkout it runs from.
    changes["runs_dir"] = str(config_dir / "runs")
    changes["datasets_dir"] = str(config_dir / "datasets")
    changes["weights_dir"] = str(config_dir / "weights")
    settings.update(changes)


def _set_threads(torch_utils: object, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)

    # NOTE: ultralytics 8.4.190 resets torch to its module constant NUM_THREADS (cpu_count - 1, at
    # most 8) whenever it selects a CPU device, so the constant is overridden for this process.
    torch_utils.NUM_THREADS = threads


def prefer_passive_openmp_wait() -> None:
    """Let idle OpenMP threads sleep instead of spinning, unless ``OMP_WAIT_POLICY`` is already set.

    torch's OpenMP runtime (libgomp) reads the variable once, when ``import torch`` loads it, so
    call this before the first import of torch in the process. Spinning threads hold their cores
    while they wait, which other processes and the service's own SCP and delivery threads need.
    On 2 cores shared with other processes, reading a two-image study with 2 torch threads took
    1.4 to 9 times as long with spinning threads (``OMP_WAIT_POLICY=ACTIVE``) as with sleeping ones.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

