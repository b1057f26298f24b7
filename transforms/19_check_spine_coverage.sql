-- Fail the build when an extract record has no row in the child spine: silently dropping it
-- would bias every metric. The linker must give every agency person record a child_id.

SELECT error(
    'child spine does not cover ' || count(*) || ' extract record(s) of agencies '
    || string_agg(DISTINCT agency, ', ' ORDER BY agency)
)
FROM stg_person
WHERE child_id IS NULL
HAVING count(*) > 0;
