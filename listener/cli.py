"""The ``pedfrac`` command: serve, status, echo, check-models, build-demo-package."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from inference.package import PackageError
from listener.settings import Destination, Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings file (TOML); see deploy/pedfrac.example.toml")
    parser.add_argument("--data-dir", type=Path, help="folder for the database, the archive and logs")


def _serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the DICOM service until interrupted",
                                description="Run the SCP, the job runner and the delivery loop. "
                                            "Flags override the settings file.")
    _add_config(serve)
    serve.add_argument("--ae-title", help="our AE title (default PEDFRAC)")
    serve.add_argument("--bind", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="DICOM port to listen on (default 11112; 0 picks a free port)")
    serve.add_argument("--allow", action="append", metavar="AET",
                       help="calling AE title allowed to send to us; repeat for several")
    serve.add_argument("--destination", action="append", metavar="AET@HOST:PORT",
                       help="where results are sent by C-STORE; repeat for several")
    serve.add_argument("--stable-after", type=float, metavar="SECONDS",
                       help="seconds without a new instance before a study is read (default 30)")
    serve.add_argument("--models", type=Path, help="model package folder (default: the bundled demo package)")
    serve.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the models run (default auto)")
    serve.add_argument("--language", choices=("ko", "en"), help="language of the overlay captions (default en)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pedfrac", description="AI second reader for pediatric elbow and wrist "
                                     "radiographs, beside a PACS. Not for diagnosis alone.")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _serve_parser(commands)

    status = commands.add_parser("status", help="list recent studies with their state")
    _add_config(status)
    status.add_argument("--limit", type=int, default=20, help="number of studies to list (default 20)")

    echo = commands.add_parser("echo", help="send a C-ECHO to a DICOM node and report the answer")
    echo.add_argument("node", metavar="AET@HOST:PORT")
    echo.add_argument("--ae-title", default="PEDFRAC", help="our calling AE title (default PEDFRAC)")

    check = commands.add_parser("check-models", help="verify a model package's manifest and checksums")
    check.add_argument("models", type=Path, nargs="?", help="model package folder (default: the bundled one)")

    demo = commands.add_parser("build-demo-package", help="train the demo model package on synthetic phantoms")
    demo.add_argument("rest", nargs=argparse.REMAINDER, help="options passed on; see build-demo-package -- --help")
    return parser


def _serve_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            overrides.setdefault(section, {})[key] = value

    put("dicom", "ae_title", args.ae_title)
    put("dicom", "bind", args.bind)
    put("dicom", "port", args.port)
    put("dicom", "allowed_calling_ae_titles", args.allow)
    put("study", "stable_after", args.stable_after)
    put("storage", "data_dir", args.data_dir)
    put("inference", "models", args.models)
    put("inference", "device", args.device)
    put("reporting", "language", args.language)
    if args.destination:
        put("delivery", "destinations", [Destination.parse(text).model_dump() for text in args.destination])
    return overrides


def _settings(args: argparse.Namespace) -> Settings:
    overrides = _serve_overrides(args) if args.command == "serve" else {}
    if args.command == "status" and args.data_dir is not None:
        overrides = {"storage": {"data_dir": args.data_dir}}
    return load_settings(args.config, overrides=overrides)


def serve(settings: Settings) -> int:
    from listener.service import Service

    service = Service(settings)
    service.start()

    def _stop(signum: int, _frame: object) -> None:
        logger.info("signal %s received: stopping", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)

    try:
        if args.command == "echo":
            from listener.commands import echo
            return echo(Destination.parse(args.node), args.ae_title)
        if args.command == "check-models":
            from listener.commands import check_models
            return check_models(args.models)
        if args.command == "build-demo-package":
            from inference.training.demo import main_build_demo
            return main_build_demo([item for item in args.rest if item != "--"])

        settings = _settings(args)
        if args.command == "status":
            from listener.commands import print_status
            return print_status(settings, args.limit)
        return serve(settings)
    except SettingsError as error:
        print(f"pedfrac: {error}", file=sys.stderr)
        return 2
    except PackageError as error:
        print(f"pedfrac: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
