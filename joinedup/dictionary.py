"""The data dictionary: one set of table, view and column descriptions (transforms/dictionary.json)
and the metric catalogue, made into DuckDB comments, the warehouse's `data_dictionary` table and
docs/data_dictionary.md.

A column whose description is null in the dictionary takes the description of that column in
the table's contract (schemas/<contract>.json: the fact tables) or, failing that, the
dictionary's `common_columns`. The build loads the resolved descriptions (`description_rows`)
as TEMP table src_dictionary, and `transforms/95_data_dictionary.sql` joins them to the tables
and columns the build actually made, so a column nobody described shows up there with a NULL
description.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from joinedup.contracts import contract

DICTIONARY_FILE = "dictionary.json"
MARKDOWN_TITLE = "# joinedup warehouse: data dictionary"

# The resolved descriptions as the build loads them (TEMP src_dictionary).
DESCRIPTIONS_SCHEMA = pa.schema(
    [
        ("table_name", pa.string()),
        ("column_name", pa.string()),  # NULL: the table itself
        ("table_group", pa.string()),
        ("access", pa.string()),
        ("grain", pa.string()),
        ("description", pa.string()),
    ]
)


def read_dictionary(path: Path) -> dict[str, Any]:
    """The dictionary file: overview, groups, common columns and tables."""
    dictionary = json.loads(Path(path).read_text(encoding="utf-8"))
    groups = {g["id"] for g in dictionary["groups"]}
    unknown = sorted(
        f"{name}: {entry.get('group')}"
        for name, entry in dictionary["tables"].items()
        if entry.get("group") not in groups
    )
    if unknown:
        raise ValueError(f"{path}: table(s) in no known group: {unknown}")
    return dictionary


def column_description(dictionary: dict[str, Any], table: str, column: str) -> str | None:
    """A column's description: the table's own, else its contract's, else the common one."""
    entry = dictionary["tables"][table]
    own = (entry.get("columns") or {}).get(column)
    if own:
        return own
    if entry.get("contract"):
        described = {c.name: c.description for c in contract(entry["contract"]).payload}
        if described.get(column):
            return described[column]
    return dictionary["common_columns"].get(column)


def description_rows(dictionary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per table and per column of each, with the resolved descriptions."""
    rows = []
    for table, entry in dictionary["tables"].items():
        common = {"table_name": table, "table_group": entry["group"], "access": entry["access"]}
        rows.append(
            {
                **common,
                "column_name": None,
                "grain": entry["grain"],
                "description": entry["description"],
            }
        )
        for column in entry.get("columns") or {}:
            rows.append(
                {
                    **common,
                    "column_name": column,
                    "grain": None,
                    "description": column_description(dictionary, table, column),
                }
            )
    return rows


def sql_literal(text: str) -> str:
    """A SQL string literal (COMMENT ON takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def comment_statements(con: duckdb.DuckDBPyConnection) -> list[str]:
    """COMMENT ON statements for every described table, view and column of data_dictionary."""
    rows = con.execute(
        "SELECT entry_type, table_name, column_name, description FROM data_dictionary "
        "WHERE entry_type IN ('table', 'view', 'column') AND description IS NOT NULL "
        "ORDER BY table_name, column_name NULLS FIRST"
    ).fetchall()
    kinds = {table: kind for kind, table, column, _ in rows if column is None and kind != "column"}
    statements = []
    for kind, table, column, description in rows:
        if kind == "column":
            target = f'COLUMN "{table}"."{column}"'
        else:
            target = f'{kinds[table].upper()} "{table}"'
        statements.append(f"COMMENT ON {target} IS {sql_literal(description)}")
    return statements


def apply_comments(con: duckdb.DuckDBPyConnection) -> int:
    """Put each description of data_dictionary on its table, view or column; returns how many."""
    statements = comment_statements(con)
    con.execute("BEGIN TRANSACTION")  # one commit, not one per comment
    try:
        for statement in statements:
            con.execute(statement)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return len(statements)


# --- Markdown ---------------------------------------------------------------------------------


def render_markdown(dictionary: dict[str, Any], catalogue: list[dict[str, Any]]) -> str:
    """docs/data_dictionary.md from the dictionary and the metric catalogue."""
    lines = [
        MARKDOWN_TITLE,
        "",
        "Generated by `joinedup dictionary --out docs/data_dictionary.md` from "
        "`transforms/dictionary.json`, the contracts in `schemas/` and "
        "`transforms/catalogue/<theme>.json`; do not edit by hand. The same descriptions are "
        "in the warehouse as the `data_dictionary` table and as DuckDB comments "
        "(`SELECT comment FROM duckdb_tables()`).",
        "",
        "## The star schema",
        "",
        *dictionary["overview"],
        "",
    ]
    for group in dictionary["groups"]:
        tables = [(n, e) for n, e in dictionary["tables"].items() if e["group"] == group["id"]]
        if tables:
            lines += [f"## {group['title']}", ""]
            for name, entry in tables:
                lines += table_lines(dictionary, name, entry)
    lines += metric_lines(catalogue)
    return "\n".join(lines).rstrip("\n") + "\n"


def table_lines(dictionary: dict[str, Any], name: str, entry: dict[str, Any]) -> list[str]:
    """One table's section: description, grain, access and its columns."""
    kind = "view" if entry["group"] == "view" else "table"
    source = f" Columns from contract `{entry['contract']}`." if entry.get("contract") else ""
    lines = [
        f"### `{name}` ({kind}, {entry['access']})",
        "",
        entry["description"] + source,
        "",
        f"Grain: {entry['grain']}",
        "",
        "| column | description |",
        "|---|---|",
    ]
    for column in entry.get("columns") or {}:
        described = column_description(dictionary, name, column) or "**undocumented**"
        lines.append(f"| `{column}` | {cell(described)} |")
    return [*lines, ""]


def metric_lines(catalogue: list[dict[str, Any]]) -> list[str]:
    """The metrics section: a summary table, then each metric's definition."""
    lines = [
        "## Metric definitions",
        "",
        "From `transforms/catalogue/<theme>.json` (also the `metric_catalogue` table). "
        "Every metric's cells are in `metric_values` (restricted) and `published_metrics`.",
        "",
        "| id | title | unit | statistic | cohorts | higher is better | disclosure | "
        "linked data | kind |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in catalogue:
        lines.append(
            f"| `{m['id']}` | {cell(m['title'])} | {m['unit']} | {m['statistic']} | "
            f"{', '.join(m['cohort_dimensions'])} | {yes_no(m['higher_is_better'])} | "
            f"{m['disclosure_rule']} | {yes_no(m['needs_linked_data'])} | "
            f"{m['activity_or_outcome']} |"
        )
    lines.append("")
    for m in catalogue:
        lines += [
            f"### `{m['id']}`: {m['title']}",
            "",
            m["definition"],
            "",
            f"- Numerator: {m['numerator']}",
            f"- Denominator: {m['denominator']}",
            f"- Source agencies: {', '.join(m['source_agencies'])}",
            f"- National benchmark: {benchmark_text(m.get('benchmark'))}",
            "",
        ]
    return lines


def benchmark_text(benchmark: dict[str, Any] | None) -> str:
    if not benchmark:
        return "none"
    value = benchmark["value"]
    shown = (
        ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
    )
    return f"{shown} ({benchmark['source']}, {benchmark['year']})"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def write_markdown(target: Path, transforms_dir: Path) -> Path:
    """Write the Markdown data dictionary from the definitions in transforms_dir."""
    from joinedup.metrics import CATALOGUE_DIR, read_catalogue

    dictionary = read_dictionary(Path(transforms_dir) / DICTIONARY_FILE)
    catalogue = read_catalogue(Path(transforms_dir) / CATALOGUE_DIR)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_markdown(dictionary, catalogue), encoding="utf-8")
    return target


def undocumented(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table, view or column of a warehouse that data_dictionary has no description for,
    as table or table.column."""
    rows = con.execute(
        "SELECT table_name, column_name FROM data_dictionary "
        "WHERE entry_type <> 'metric' AND description IS NULL "
        "ORDER BY table_name, column_name NULLS FIRST"
    ).fetchall()
    return [table if column is None else f"{table}.{column}" for table, column in rows]
