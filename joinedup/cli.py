"""The `joinedup` command: each stage by hand, and the demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from joinedup.settings import AGENCIES, MissingKeyError, Settings, load_key

DEFAULT_PERIOD = "2024-25"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; known failures print one clear line and exit 2."""
    from joinedup.ingest import ContractError
    from joinedup.pipeline import PeriodError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args, Settings.from_env()) or 0
    except (MissingKeyError, ContractError, PeriodError, FileNotFoundError) as error:
        print(f"joinedup {args.command}: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="joinedup", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler, command=name)
        return sub

    demo = command("demo", run_demo, "Run the whole pipeline on the synthetic areas via Airflow.")
    synth = command("synth", run_synth, "Generate the synthetic areas' raw extracts and truth.")
    for sub in (demo, synth):
        sub.add_argument("--period", default=DEFAULT_PERIOD)
        sub.add_argument("--seed", type=int, default=20241)
        sub.add_argument("--scale", type=float, default=1.0)

    pseudo = command(
        "pseudonymise", run_pseudonymise, "Pseudonymise a raw extract at source (needs the key)."
    )
    pseudo.add_argument("source", type=Path, help="raw extract (CSV)")
    pseudo.add_argument("target", type=Path, help="pseudonymised extract to write (Parquet)")
    pseudo.add_argument("--extract", required=True, help="contract name, e.g. health_referrals")

    ingest = command("ingest", run_ingest, "Ingest and validate what an agency landed.")
    ingest.add_argument("--agency", required=True, choices=AGENCIES)
    ingest.add_argument("--period", required=True)

    for name, handler, text in (
        ("link", run_link, "Link every current delivery into the child spine."),
        ("publish", run_publish, "Build the warehouse in a new file and swap it in."),
        ("report", run_report, "Render one outcome report per area."),
        ("evaluate", run_evaluate, "Linkage precision/recall against the synthetic truth."),
    ):
        command(name, handler, text).add_argument("--period", required=True)
    return parser


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.demo import run_demo as demo

    result = demo(settings, args.period, args.seed, args.scale)
    print("\njoinedup demo finished")
    for step, seconds in result.seconds.items():
        print(f"  {step:<28} {seconds:6.1f} s")
    print(f"\nWarehouse:  {result.warehouse}")
    print("Reports:")
    for path in result.reports:
        print(f"  {path}")
    print("\nLinkage against the synthetic ground truth:")
    print(result.linkage.to_string(index=False))
    return 0


def run_synth(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.synth import generate

    print(generate(settings, period=args.period, seed=args.seed, scale=args.scale))
    return 0


def run_pseudonymise(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pseudonymise import pseudonymise_file

    rows = pseudonymise_file(args.source, args.target, args.extract, load_key())
    print(f"{args.target}: {rows} rows pseudonymised")
    return 0


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pipeline import ingest_step, validate_step

    deliveries = ingest_step(args.agency, args.period, settings)
    print(json.dumps(validate_step(deliveries, settings), indent=2))
    return 0


def run_link(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pipeline import link_step

    print(json.dumps(link_step(args.period, settings), indent=2))
    return 0


def run_publish(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pipeline import build_step, publish_step

    built = build_step(args.period, f"cli_{args.period}", settings)
    print(publish_step(built["build_path"], settings))
    return 0


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pipeline import report_step

    print("\n".join(report_step(args.period, settings)))
    return 0


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.demo import evaluate_linkage

    print(evaluate_linkage(settings, args.period, load_key()).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
