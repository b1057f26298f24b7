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
    from joinedup.link.review import ReviewFileError
    from joinedup.pipeline import DeliveryProblem, PeriodError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args, Settings.from_env()) or 0
    except (
        MissingKeyError,
        ContractError,
        PeriodError,
        DeliveryProblem,
        ReviewFileError,
        FileNotFoundError,
    ) as error:
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

    check = command(
        "validate",
        run_validate,
        "Check an extract before sending it: the same rules as ingest, and a readable summary.",
    )
    check.add_argument("file", type=Path, help="pseudonymised extract (Parquet or CSV)")
    check.add_argument("--agency", required=True, choices=AGENCIES)
    check.add_argument("--period", required=True)
    check.add_argument("--extract", help="contract name (default: the file name)")

    quarantine = command(
        "quarantine", run_quarantine, "Export an agency's quarantined rows for a period to CSV."
    )
    quarantine.add_argument("--agency", required=True, choices=AGENCIES)
    quarantine.add_argument("--period", required=True)
    quarantine.add_argument("--out", type=Path, required=True, help="CSV file to write")

    for name, handler, text in (
        ("link", run_link, "Link every current delivery into the child spine."),
        ("publish", run_publish, "Build the warehouse in a new file and swap it in."),
        ("report", run_report, "Render one outcome report per area."),
        ("evaluate", run_evaluate, "Linkage precision/recall against the synthetic truth."),
    ):
        command(name, handler, text).add_argument("--period", required=True)

    dictionary = command(
        "dictionary",
        run_dictionary,
        "Write the Markdown data dictionary from transforms/dictionary.json and the catalogue.",
    )
    dictionary.add_argument(
        "--out", type=Path, default=Path("docs/data_dictionary.md"), help="Markdown file to write"
    )

    review = command(
        "review",
        run_review,
        "Record clerical decisions (accept/reject) from a reviewed review.csv; "
        "the next link run applies them.",
    )
    review.add_argument("--period", required=True)
    review.add_argument(
        "--file", type=Path, help="reviewed file (default: the period's link/review.csv)"
    )
    review.add_argument("--reviewer", help="reviewer for decided rows whose reviewer is blank")
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
    print("Data Docs (Great Expectations):")
    for path in result.data_docs:
        print(f"  {path}")
    print("\nRows delivered, accepted and quarantined (joinedup quarantine exports them):")
    print(result.data_quality.to_string(index=False))
    print("\nLinkage against the synthetic ground truth:")
    print(result.linkage.to_string(index=False))
    return 0


def run_synth(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.synth import generate

    print(generate(settings, period=args.period, seed=args.seed, scale=args.scale))
    return 0


def run_pseudonymise(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pseudonymise import pseudonymise_file

    report = pseudonymise_file(args.source, args.target, args.extract, load_key())
    print(f"{args.target}: {report}")
    return 0


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pipeline import ingest_step, validate_step

    deliveries = ingest_step(args.agency, args.period, settings)
    print(json.dumps(validate_step(deliveries, settings), indent=2))
    return 0


def run_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when every row would be accepted, 1 when rows would be quarantined, 2 when the
    file would be rejected or held."""
    from joinedup.pipeline import check_extract

    delivery, quarantine = check_extract(args.file, args.agency, args.period, args.extract)
    print(describe_check(delivery, quarantine))
    if delivery.status in ("rejected", "held"):
        return 2
    return 1 if delivery.rows_quarantined else 0


def describe_check(delivery, quarantine) -> str:
    """A readable summary of a checked file: the counts, then each rule with its rows."""
    head = f"{delivery.source_path} ({delivery.extract}, {delivery.period}): "
    if delivery.status == "rejected":
        return head + f"REJECTED\n  {delivery.reason}"
    lines = [
        head + f"{delivery.rows_received} rows received: {delivery.rows_accepted} accepted, "
        f"{delivery.rows_quarantined} quarantined"
    ]
    for rule, group in quarantine.groupby("rule", sort=True):
        rows = sorted(set(group.row))
        shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
        values = ", ".join(repr(v) for v in list(dict.fromkeys(group.value.dropna()))[:3])
        lines.append(
            f"  {rule:<40} {len(rows):>6} row(s): {shown}" + (f"  [{values}]" if values else "")
        )
    for failure in delivery.failures:
        if failure["severity"] != "row":
            lines.append(f"  {failure['severity']}: {failure['detail']}")
    verdict = {
        "held": "HELD: the period would not be published until this is corrected",
        "accepted": "ready to send"
        if not delivery.rows_quarantined
        else "can be sent; the quarantined rows will be returned to you",
    }[delivery.status]
    lines.append(f"Result: {verdict}")
    return "\n".join(lines)


def run_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pipeline import export_quarantine

    rows = export_quarantine(args.agency, args.period, args.out, settings)
    print(f"{args.out}: {rows} quarantined rows")
    return 0


def run_link(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.pipeline import link_step

    print(json.dumps(link_step(args.period, settings), indent=2))
    return 0


def run_review(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.link.review import decisions_path, record_decisions, review_path

    reviewed = args.file or review_path(settings, args.period)
    recorded = record_decisions(reviewed, settings, args.period, args.reviewer)
    counts = recorded["decision"].value_counts()
    print(
        f"{reviewed}: {len(recorded)} new decision(s) ({counts.get('accept', 0)} accept, "
        f"{counts.get('reject', 0)} reject) recorded in {decisions_path(settings)}; "
        "they apply on the next link run"
    )
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


def run_dictionary(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.dictionary import write_markdown

    print(write_markdown(args.out, settings.transforms_dir))
    return 0


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from joinedup.demo import evaluate_linkage

    print(evaluate_linkage(settings, args.period, load_key()).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
