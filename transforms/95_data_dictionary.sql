-- data_dictionary: every table, view and column the build made, with its description from
-- transforms/dictionary.json (loaded by metrics.py as TEMP src_dictionary, contract and common
-- column descriptions already resolved), and every metric with its title and definition from
-- metric_catalogue. Runs last, so it lists every table (itself and the manifest included; the
-- manifest row is written after the transforms). A table or column the dictionary does not
-- describe gets a NULL description: tests/test_dictionary.py lists them. metrics.py then puts
-- each description on its table, view or column as a DuckDB comment.

CREATE TABLE data_dictionary (
    entry_type VARCHAR,
    table_name VARCHAR,
    column_name VARCHAR,
    metric_id VARCHAR,
    data_type VARCHAR,
    table_group VARCHAR,
    access VARCHAR,
    grain VARCHAR,
    description VARCHAR
);

INSERT INTO data_dictionary
WITH objects AS (
    SELECT table_name, 'table' AS entry_type
    FROM duckdb_tables()
    WHERE database_name = current_database() AND NOT temporary
    UNION ALL
    SELECT view_name, 'view'
    FROM duckdb_views()
    WHERE database_name = current_database() AND NOT temporary AND NOT internal
),
described_tables AS (
    SELECT table_name, table_group, access, grain, description
    FROM src_dictionary
    WHERE column_name IS NULL
),
entries AS (
    SELECT
        o.entry_type, o.table_name, NULL AS column_name, NULL AS metric_id, NULL AS data_type,
        t.table_group, t.access, t.grain, t.description, -1 AS position
    FROM objects AS o
    LEFT JOIN described_tables AS t USING (table_name)
    UNION ALL
    SELECT
        'column', c.table_name, c.column_name, NULL, c.data_type, t.table_group, t.access, NULL,
        d.description, c.column_index
    FROM duckdb_columns() AS c
    JOIN objects AS o USING (table_name)
    LEFT JOIN described_tables AS t USING (table_name)
    LEFT JOIN src_dictionary AS d
        ON d.table_name = c.table_name AND d.column_name = c.column_name
    WHERE c.database_name = current_database()
    UNION ALL
    SELECT
        'metric', 'metric_values', NULL, m.id, NULL, 'metric', 'published', NULL,
        m.title || ': ' || m.definition, NULL
    FROM metric_catalogue AS m
)
SELECT
    entry_type, table_name, column_name, metric_id, data_type, table_group, access, grain,
    description
FROM entries
ORDER BY table_name, entry_type = 'metric', position, metric_id;

DROP TABLE src_dictionary;
