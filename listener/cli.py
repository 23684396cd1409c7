"""The ``pedfrac`` command: the service (serve, status, retry, audit, echo, check-models) and the method.

The method's commands (index, train-classifier, train-detector, cross-validate, package, evaluate,
gradcam, make-phantoms, build-demo-package) live in :mod:`inference.training.commands`.
"""
from __future__ import annotations

import argparse
import os
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from inference.package import PackageError
from inference.training.commands import METHOD_COMMANDS, add_method_parsers, run_method_command
from listener.logs import configure_logging
from listener.settings import Destination, Settings, SettingsError, load_settings
from listener.tls import TLSSetupError
from storage.models import AuditEvent

logger = logging.getLogger(__name__)

DATABASE_COMMANDS = ("status", "retry", "audit")


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

    status = commands.add_parser("status", help="list recent studies, and deliveries that failed or are dead")
    _add_config(status)
    status.add_argument("--limit", type=int, default=20, help="number of studies to list (default 20)")

    _retry_parser(commands)
    _audit_parser(commands)

    echo = commands.add_parser("echo", help="send a C-ECHO to a DICOM node and print its response status")
    echo.add_argument("node", metavar="AET@HOST:PORT")
    echo.add_argument("--ae-title", default="PEDFRAC", help="our calling AE title (default PEDFRAC)")

    check = commands.add_parser("check-models", help="verify a model package's manifest and checksums")
    check.add_argument("models", type=Path, nargs="?", help="model package folder (default: the bundled one)")

    add_method_parsers(commands)
    return parser


def _retry_parser(commands: argparse._SubParsersAction) -> None:
    retry = commands.add_parser("retry", help="send dead deliveries again",
                                description="Make dead deliveries due now with a fresh count of attempts; the "
                                            "running service sends them on its next round. Filters combine; "
                                            "with none, every dead delivery is retried.")
    _add_config(retry)
    retry.add_argument("--delivery", type=int, action="append", metavar="ID", help="delivery id (see pedfrac "
                       "status); repeat for several")
    retry.add_argument("--study", metavar="UID", help="only deliveries of this Study Instance UID")
    retry.add_argument("--destination", metavar="AET@HOST:PORT", help="only deliveries to this destination")
    retry.add_argument("--pending", action="store_true",
                       help="also make pending deliveries that wait out their back-off due now")


def _audit_parser(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="query the audit trail: who sent what, which model read it, "
                                "what was delivered where")
    _add_config(audit)
    audit.add_argument("--study", metavar="UID", help="Study Instance UID")
    audit.add_argument("--sop", metavar="UID", help="SOP Instance UID")
    audit.add_argument("--event", action="append", choices=[event.value for event in AuditEvent],
                       help="event type; repeat for several")
    audit.add_argument("--peer", metavar="AET_OR_DESTINATION", help="calling AE title or destination name")
    audit.add_argument("--job", type=int, metavar="ID", help="job id")
    audit.add_argument("--since", type=_timestamp, metavar="TIME", help="from this UTC time (ISO 8601), inclusive")
    audit.add_argument("--until", type=_timestamp, metavar="TIME", help="up to this UTC time (ISO 8601), exclusive")
    audit.add_argument("--limit", type=int, default=1000, help="latest records to print (default 1000)")
    audit.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time such as 2027-01-31T08:00") from error
    return value.replace(tzinfo=None)


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
    if args.command in DATABASE_COMMANDS and args.data_dir is not None:
        overrides = {"storage": {"data_dir": args.data_dir}}
    return load_settings(args.config, overrides=overrides)


def serve(settings: Settings) -> int:
    from inference.offline import prefer_passive_openmp_wait

    # Files the service or its libraries create (the ultralytics settings among them) stay owner-only.
    os.umask(0o077)

    prefer_passive_openmp_wait()  # before the import below, which loads torch
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
    configure_logging(args.log_level)

    try:
        if args.command == "echo":
            from listener.commands import echo
            return echo(Destination.parse(args.node), args.ae_title)
        if args.command == "check-models":
            from listener.commands import check_models
            return check_models(args.models)
        if args.command in METHOD_COMMANDS:
            return run_method_command(args)

        settings = _settings(args)
        if args.command in DATABASE_COMMANDS:
            return _database_command(args, settings)
        return serve(settings)
    except (SettingsError, TLSSetupError) as error:
        print(f"pedfrac: {error}", file=sys.stderr)
        return 2
    except PackageError as error:
        print(f"pedfrac: {error}", file=sys.stderr)
        return 3


def _database_command(args: argparse.Namespace, settings: Settings) -> int:
    from listener import commands

    if args.command == "status":
        return commands.print_status(settings, args.limit)
    if args.command == "retry":
        return commands.retry(settings, delivery_ids=args.delivery, study_uid=args.study,
                              destination=args.destination, include_pending=args.pending)
    filters = commands.AuditFilters(study_uid=args.study, sop_uid=args.sop,
                                    events=[AuditEvent(event) for event in args.event or []], peer=args.peer,
                                    job_id=args.job, since=args.since, until=args.until, limit=args.limit)
    return commands.print_audit(settings, filters, output_format=args.format)


if __name__ == "__main__":
    sys.exit(main())
