"""Tests of joinedup.dictionary and transforms/95_data_dictionary.sql: one set of descriptions
makes the DuckDB comments, the data_dictionary table and docs/data_dictionary.md, and every table,
view and column of a built warehouse is described."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from joinedup.cli import main
from joinedup.dictionary import (
    DICTIONARY_FILE,
    column_description,
    description_rows,
    read_dictionary,
    render_markdown,
    undocumented,
)
from joinedup.metrics import CATALOGUE_DIR, read_catalogue
from joinedup.settings import PROJECT_ROOT, Settings
from tests.test_metrics import build_fixture_warehouse

MARKDOWN = PROJECT_ROOT / "docs" / "data_dictionary.md"
TRANSFORMS = Settings().transforms_dir


@pytest.fixture(scope="module")
def con(fixture_warehouse: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(fixture_warehouse), read_only=True)
    yield connection
    connection.close()


def warehouse_columns(con) -> set[tuple[str, str | None]]:
    """(table, None) for every table and view, (table, column) for every column."""
    objects = con.execute(
        "SELECT table_name FROM duckdb_tables() UNION ALL "
        "SELECT view_name FROM duckdb_views() WHERE NOT internal"
    ).fetchall()
    columns = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal"
    ).fetchall()
    return {(t, None) for (t,) in objects} | set(columns)


def test_every_table_view_and_column_of_the_warehouse_is_described(con):
    missing = undocumented(con)
    assert missing == [], (
        "describe these in transforms/dictionary.json (then run `joinedup dictionary`): "
        + ", ".join(missing)
    )


def test_data_dictionary_lists_exactly_the_warehouse_tables_views_and_columns(con):
    listed = con.execute(
        "SELECT table_name, column_name FROM data_dictionary WHERE entry_type <> 'metric'"
    ).fetchall()
    assert len(listed) == len(set(listed))
    assert set(listed) == warehouse_columns(con)


def test_every_dictionary_entry_is_a_table_or_column_of_the_warehouse(con):
    """No stale description: each one names something the build makes."""
    rows = description_rows(read_dictionary(TRANSFORMS / DICTIONARY_FILE))
    described = {(r["table_name"], r["column_name"]) for r in rows}
    stale = sorted(f"{t}.{c}" if c else t for t, c in described - warehouse_columns(con))
    assert stale == [], f"transforms/dictionary.json describes what the warehouse lacks: {stale}"


def test_descriptions_are_on_the_tables_views_and_columns_as_comments(con):
    expected = dict(
        ((t, c), d)
        for t, c, d in con.execute(
            "SELECT table_name, column_name, description FROM data_dictionary "
            "WHERE entry_type <> 'metric'"
        ).fetchall()
    )
    comments = con.execute(
        "SELECT table_name, NULL, comment FROM duckdb_tables() UNION ALL "
        "SELECT view_name, NULL, comment FROM duckdb_views() WHERE NOT internal UNION ALL "
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE NOT internal"
    ).fetchall()
    assert {(t, c): comment for t, c, comment in comments} == expected
    assert expected[("dim_child_period", "sen_provision")].startswith("SEN status")


def test_fact_columns_take_their_contracts_descriptions(con):
    description = con.execute(
        "SELECT description FROM data_dictionary "
        "WHERE table_name = 'fct_attendance' AND column_name = 'fsm_eligible'"
    ).fetchall()[0][0]
    assert description == "Eligible for free school meals at any point in the period."


def test_metric_entries_come_from_the_catalogue(con):
    catalogue = read_catalogue(TRANSFORMS / CATALOGUE_DIR)
    rows = dict(
        con.execute(
            "SELECT metric_id, description FROM data_dictionary WHERE entry_type = 'metric'"
        ).fetchall()
    )
    assert rows == {m["id"]: f"{m['title']}: {m['definition']}" for m in catalogue}


def test_column_description_prefers_own_then_contract_then_common():
    dictionary = {
        "common_columns": {"period": "common period", "ncyear": "common ncyear"},
        "tables": {
            "t": {"contract": "education_census", "columns": {"period": None, "ncyear": None}},
            "u": {"columns": {"period": "own period", "other": None}},
        },
    }
    assert column_description(dictionary, "u", "period") == "own period"
    assert column_description(dictionary, "t", "ncyear").startswith("National curriculum year")
    assert column_description(dictionary, "t", "period") == "common period"
    assert column_description(dictionary, "u", "other") is None


def test_a_table_or_column_nobody_described_is_named(tmp_path):
    """A transform adding an undescribed table and column makes undocumented() name both."""
    transforms = tmp_path / "transforms"
    shutil.copytree(TRANSFORMS, transforms)
    (transforms / "85_extra.sql").write_text(
        "CREATE TABLE extra_table AS SELECT 1 AS x;\n"
        "ALTER TABLE dim_child ADD COLUMN new_flag BOOLEAN;\n"
    )
    settings = replace(Settings(), transforms_dir=transforms)
    build_fixture_warehouse(tmp_path / "build.duckdb", tmp_path, settings=settings)
    with duckdb.connect(str(tmp_path / "build.duckdb"), read_only=True) as con:
        assert undocumented(con) == ["dim_child.new_flag", "extra_table", "extra_table.x"]


def test_the_committed_markdown_is_what_the_definitions_generate():
    expected = render_markdown(
        read_dictionary(TRANSFORMS / DICTIONARY_FILE), read_catalogue(TRANSFORMS / CATALOGUE_DIR)
    )
    assert MARKDOWN.read_text(encoding="utf-8") == expected, (
        "docs/data_dictionary.md is stale: run `joinedup dictionary --out docs/data_dictionary.md`"
    )


def test_the_markdown_documents_every_table_and_metric():
    text = MARKDOWN.read_text(encoding="utf-8")
    dictionary = read_dictionary(TRANSFORMS / DICTIONARY_FILE)
    for table in dictionary["tables"]:
        assert f"### `{table}` (" in text, table
    for metric in read_catalogue(TRANSFORMS / CATALOGUE_DIR):
        assert f"### `{metric['id']}`: " in text, metric["id"]
    assert "## The star schema" in text
    assert "**undocumented**" not in text


def test_the_markdown_marks_a_column_without_description():
    dictionary = read_dictionary(TRANSFORMS / DICTIONARY_FILE)
    dictionary["tables"]["dim_child"]["columns"]["new_flag"] = None
    assert "| `new_flag` | **undocumented** |" in render_markdown(dictionary, [])


def test_dictionary_command_writes_the_markdown(tmp_path, capsys):
    target = tmp_path / "docs" / "dictionary.md"
    assert main(["dictionary", "--out", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == MARKDOWN.read_text(encoding="utf-8")
    assert str(target) in capsys.readouterr().out


def test_a_table_in_no_known_group_is_refused(tmp_path):
    dictionary = (TRANSFORMS / DICTIONARY_FILE).read_text(encoding="utf-8")
    path = tmp_path / DICTIONARY_FILE
    path.write_text(dictionary.replace('"group": "dimension"', '"group": "dimensions"', 1))
    with pytest.raises(ValueError, match="dim_child: dimensions"):
        read_dictionary(Path(path))
