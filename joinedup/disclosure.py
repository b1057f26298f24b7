"""Secondary (complementary) suppression of the published metric counts.

Primary suppression hides the counts in a rule's band (dfe 1-4, nhs 1-7; see
transforms/49_disclosure_counts.sql). A hidden count can still be worked out from what is shown:
the non-'all' values of a cohort dimension add up to 'all' (N = all - K - E) where the
dimension partitions (ref_cohort_value.partitions; not identifier or agency_pair, whose values
count one record or child more than once and have no 'all'), metrics whose numerators partition
a shared denominator add up to it (known to 1, 2 or 3 services), counts the catalogue texts
declare adding up (int_count_sums: contacts offered = not attended + attended), and one count is
published by every metric whose catalogue text names it, or that int_count_aliases names as it.
This module hides further counts ("complements") until no hidden count can be narrowed below its
rule's band width. Every sum is checked against the true counts: a sum that does not hold fails
the build rather than being assumed.

It works on int_disclosure_counts (one row per count a cell publishes) as a system of sums
`total = part + part + ...` over integer counts, each known to a reader as an interval (exact
for dfe, +-2 for nhs rounding, at least 1 when hidden). Interval propagation over the sums gives
each hidden count's feasible range; a hidden count whose range is narrower than its protection
(the band's width) gets a complement: in the sum that bounds it most tightly, the smallest
shown non-zero count that is not a total, ties broken by key; a total only if no part is left.
Repeat until stable. Propagation is fast but misses bounds that only combining several sums
gives (e.g. across the known-to-services family and a cohort dimension at once), so every
hidden count is then checked against the reader's exact integer program (HiGHS, through
scipy), and a count it still narrows gets a further complement, until none is narrowed.
Iterative and stateful, hence Python rather than SQL; the rules, bands and roles stay in the
SQL and the catalogue. tests/test_disclosure.py attacks the result with its own integer
program, built from the published tables alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

# A count: (definition text, period, area, cohort dimension ('' for 'all'), cohort value).
Key = tuple[str, str, str, str, str]
# Standing in for "no upper bound": far above any count, small enough to add without overflow.
UNBOUNDED = 10**12
MAX_PASSES = 200

SUPPRESSED_COUNTS_SCHEMA = pa.schema(
    [
        ("metric_id", pa.string()),
        ("period", pa.string()),
        ("la_code", pa.string()),
        ("cohort", pa.string()),
        ("cohort_value", pa.string()),
        ("role", pa.string()),
        ("suppressed", pa.bool_()),
        ("secondary", pa.bool_()),
    ]
)


class DisclosureError(RuntimeError):
    """The counts contradict each other, or a hidden count cannot be protected."""


@dataclass(frozen=True)
class CountItem:
    """One count one metric cell publishes (a row of int_disclosure_counts)."""

    metric_id: str
    period: str
    la_code: str
    cohort: str
    cohort_value: str
    role: str
    definition: str
    disclosure_rule: str
    count: int
    primary_suppressed: bool
    shown_low: int
    shown_high: int
    protection: int
    # The count's identity when int_count_aliases names the row as another count, else None.
    count_definition: str | None = None
    count_cohort: str | None = None
    count_value: str | None = None
    # Whether the values of the row's own dimension add up to 'all'.
    partitions: bool = True

    @property
    def key(self) -> Key:
        if self.count_definition is not None:
            return (
                self.count_definition,
                self.period,
                self.la_code,
                self.count_cohort or "",
                self.count_value or "",
            )
        return count_key(self.definition, self.period, self.la_code, self.cohort, self.cohort_value)


@dataclass(frozen=True)
class Count:
    """One count, however many cells publish it."""

    key: Key
    count: int
    primary_suppressed: bool
    shown_low: int
    shown_high: int
    protection: int


@dataclass(frozen=True)
class Equation:
    """total = sum(parts)."""

    total: Key
    parts: tuple[Key, ...]

    @property
    def members(self) -> tuple[Key, ...]:
        return (self.total, *self.parts)


Ranges = dict[Key, tuple[int, int]]


def count_key(definition: str, period: str, la_code: str, cohort: str, value: str) -> Key:
    """The count's identity: 'all' is one count whatever the cohort dimension."""
    return (definition, period, la_code, "" if value == "all" else cohort, value)


def read_count_items(con: duckdb.DuckDBPyConnection) -> list[CountItem]:
    columns = ", ".join(CountItem.__dataclass_fields__)
    rows = con.execute(f"SELECT {columns} FROM int_disclosure_counts").fetchall()
    return [CountItem(*row) for row in rows]


def read_declared_sums(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The texts int_count_sums declares adding up: total text -> part texts."""
    sums: dict[str, list[str]] = defaultdict(list)
    rows = con.execute(
        "SELECT total_definition, part_definition FROM int_count_sums ORDER BY ALL"
    ).fetchall()
    for total, part in rows:
        sums[total].append(part)
    return dict(sums)


def merge_counts(items: Iterable[CountItem]) -> dict[Key, Count]:
    """One Count per key: hidden if any cell hides it, with the narrowest shown interval and
    the widest protection of the cells that publish it."""
    merged: dict[Key, Count] = {}
    for item in items:
        found = merged.get(item.key)
        if found is None:
            merged[item.key] = Count(
                item.key,
                item.count,
                item.primary_suppressed,
                item.shown_low,
                item.shown_high,
                item.protection,
            )
            continue
        if found.count != item.count:
            raise DisclosureError(
                f"{item.key}: cells with the same catalogue definition hold different counts "
                f"({found.count}, {item.count}); give them different definitions"
            )
        merged[item.key] = Count(
            item.key,
            item.count,
            found.primary_suppressed or item.primary_suppressed,
            max(found.shown_low, item.shown_low),
            min(found.shown_high, item.shown_high),
            max(found.protection, item.protection),
        )
    return merged


def holding(equations: Iterable[Equation], counts: Mapping[Key, int], what: str) -> list[Equation]:
    """The equations, each checked against the true counts: one that does not hold is a
    wrong assumption about the definitions and fails the build."""
    checked = sorted(set(equations), key=lambda e: e.members)
    for e in checked:
        if counts[e.total] != sum(counts[p] for p in e.parts):
            raise DisclosureError(
                f"{e.total}: {what} does not hold ({counts[e.total]} is not the sum of "
                f"{[counts[p] for p in e.parts]})"
            )
    return checked


def partition_equations(items: Iterable[CountItem]) -> list[Equation]:
    """'all' = the sum of the other values of each definition, period, area and dimension
    whose values partition it (each count under its identity, which an alias may make another
    text's: the count is then in the sums of both texts)."""
    parts: dict[tuple[str, str, str, str], set[Key]] = defaultdict(set)
    totals: dict[tuple[str, str, str], Key] = {}
    values: dict[Key, int] = {}
    for item in items:
        values[item.key] = item.count
        if item.cohort_value == "all":
            totals[(item.definition, item.period, item.la_code)] = item.key
        elif item.partitions:
            parts[(item.definition, item.period, item.la_code, item.cohort)].add(item.key)
    equations = [
        Equation(totals[group[:3]], tuple(sorted(members)))
        for group, members in sorted(parts.items())
        if group[:3] in totals
    ]
    return holding(equations, values, "the partition of 'all' by a cohort dimension")


def declared_sum_equations(
    counts: Mapping[Key, Count], sums: Mapping[str, Sequence[str]]
) -> list[Equation]:
    """total = the sum of its parts, for the texts int_count_sums declares adding up, in every
    period, area and cohort value where all of them are published."""
    equations = []
    for key in sorted(counts):
        definition, *place = key
        if definition not in sums:
            continue
        parts = tuple((part, *place) for part in sums[definition])
        if all(p in counts for p in parts):
            equations.append(Equation(key, parts))
    values = {key: c.count for key, c in counts.items()}
    return holding(equations, values, "a sum int_count_sums declares")


def complementary_metric_equations(items: Sequence[CountItem]) -> list[Equation]:
    """denominator = the sum of the numerators, for metrics that share a denominator and whose
    numerators add up to it in every cell (e.g. known to exactly 1, 2 and 3 services)."""
    numerators: dict[str, str] = {}
    denominators: dict[str, str] = {}
    values: dict[Key, int] = {}
    places: dict[str, set[tuple[str, str, str, str]]] = defaultdict(set)
    for item in items:
        target = numerators if item.role == "numerator" else denominators
        target[item.metric_id] = item.definition
        values[item.key] = item.count
        places[item.metric_id].add((item.period, item.la_code, item.cohort, item.cohort_value))
    families: dict[str, list[str]] = defaultdict(list)
    for metric_id, definition in sorted(denominators.items()):
        if metric_id in numerators:
            families[definition].append(metric_id)
    equations = []
    for denominator, metrics in sorted(families.items()):
        if len(metrics) < 2:
            continue
        cells = set.union(*(places[m] for m in metrics))
        family = [
            Equation(
                count_key(denominator, *cell),
                tuple(count_key(numerators[m], *cell) for m in metrics),
            )
            for cell in sorted(cells)
        ]
        if all(
            e.total in values
            and all(p in values for p in e.parts)
            and values[e.total] == sum(values[p] for p in e.parts)
            for e in family
        ):
            equations += family
    return equations


def initial_ranges(counts: Mapping[Key, Count], suppressed: set[Key]) -> Ranges:
    """What a reader knows of each count before combining: its shown interval, or at least 1."""
    return {
        key: (1, UNBOUNDED) if key in suppressed else (c.shown_low, c.shown_high)
        for key, c in counts.items()
    }


def capped(value: int) -> int:
    """Treat any bound far above the counts as no bound, so propagation cannot creep."""
    return UNBOUNDED if value > UNBOUNDED // 2 else value


def implied_range(equation: Equation, key: Key, ranges: Ranges) -> tuple[int, int]:
    """The range of one member of a sum given the ranges of the others."""
    others_low = sum(ranges[m][0] for m in equation.parts if m != key)
    others_high = sum(ranges[m][1] for m in equation.parts if m != key)
    if key == equation.total:
        return others_low, capped(others_high)
    total_low, total_high = ranges[equation.total]
    return total_low - others_high, capped(total_high - others_low)


def tighten(equation: Equation, ranges: Ranges) -> bool:
    """Narrow every member of one sum to what the others allow; True if anything changed."""
    changed = False
    for key in equation.members:
        low, high = implied_range(equation, key, ranges)
        current_low, current_high = ranges[key]
        new = (max(current_low, low), min(current_high, high))
        if new[0] > new[1]:
            raise DisclosureError(f"{key}: the published counts contradict each other")
        if new != (current_low, current_high):
            ranges[key] = new
            changed = True
    return changed


def feasible_ranges(
    counts: Mapping[Key, Count], equations: Sequence[Equation], suppressed: set[Key]
) -> Ranges:
    """Each count's feasible range from everything shown, by interval propagation."""
    ranges = initial_ranges(counts, suppressed)
    for _ in range(MAX_PASSES):
        if not any([tighten(e, ranges) for e in equations]):
            break
    return ranges


def range_width(bounds: tuple[int, int]) -> int:
    return bounds[1] - bounds[0]


def exposed_counts(counts: Mapping[Key, Count], ranges: Ranges, suppressed: set[Key]) -> list[Key]:
    """Hidden counts whose feasible range is narrower than their protection."""
    return [key for key in sorted(suppressed) if range_width(ranges[key]) < counts[key].protection]


def choose_complement(
    key: Key,
    counts: Mapping[Key, Count],
    equations: Sequence[Equation],
    ranges: Ranges,
    suppressed: set[Key],
) -> Key | None:
    """The count to hide next to protect key: in the sum that bounds key most tightly (ties by
    order), the smallest shown non-zero count that is not a total, else a total; None when no
    sum of key has a shown non-zero count left."""
    totals = {e.total for e in equations}
    own = [e for e in equations if key in e.members]
    by_tightness = sorted(own, key=lambda e: range_width(implied_range(e, key, ranges)))
    for equation in by_tightness:
        candidates = [
            m for m in equation.members if m != key and m not in suppressed and counts[m].count > 0
        ]
        if candidates:
            return min(candidates, key=lambda m: (m in totals, counts[m].count, m))
    return None


def propagated_suppression(counts: Mapping[Key, Count], equations: Sequence[Equation]) -> set[Key]:
    """The primary counts and their complements, until propagation exposes none."""
    suppressed = {key for key, c in counts.items() if c.primary_suppressed}
    while True:
        ranges = feasible_ranges(counts, equations, suppressed)
        exposed = exposed_counts(counts, ranges, suppressed)
        if not exposed:
            return suppressed
        for key in exposed:
            complement = choose_complement(key, counts, equations, ranges, suppressed)
            if complement is not None:
                suppressed.add(complement)
                break
        else:
            raise DisclosureError(f"no complement left to protect {exposed[0]}")


class ReaderProgram:
    """What a reader can solve for in one block: every count an integer in its shown range (at
    least 1 when hidden), every sum holding; each hidden count's least and greatest value."""

    def __init__(self, counts: Mapping[Key, Count], equations: Sequence[Equation]) -> None:
        self.counts = counts
        self.keys = sorted(counts)
        self.index = {key: i for i, key in enumerate(self.keys)}
        rows, columns, values = [], [], []
        for r, equation in enumerate(equations):
            for key, sign in ((equation.total, 1.0), *((p, -1.0) for p in equation.parts)):
                rows.append(r)
                columns.append(self.index[key])
                values.append(sign)
        shape = (len(equations), len(self.keys))
        matrix = coo_array((values, (rows, columns)), shape=shape).tocsr()
        self.constraints = [LinearConstraint(matrix, 0, 0)] if equations else []

    def bounds(self, suppressed: set[Key]) -> Bounds:
        """Each count's shown range; a hidden one's upper bound a ceiling far above every count
        (a count that can reach it is as good as unbounded, and the program stays bounded)."""
        ranges = initial_ranges(self.counts, suppressed)
        ceiling = 10 * max((c.shown_high for c in self.counts.values()), default=0) + 10**6
        low = [ranges[key][0] for key in self.keys]
        high = [min(ranges[key][1], ceiling) for key in self.keys]
        return Bounds(low, high)

    def extreme(self, key: Key, suppressed: set[Key], sense: float) -> int:
        """The least (sense 1) or greatest (sense -1) value of one count."""
        objective = np.zeros(len(self.keys))
        objective[self.index[key]] = sense
        result = milp(
            objective,
            constraints=self.constraints,
            integrality=np.ones(len(self.keys)),
            bounds=self.bounds(suppressed),
        )
        if result.status != 0:
            raise DisclosureError(f"{key}: the reader's program failed: {result.message}")
        return round(sense * result.fun)

    def narrows(self, key: Key, suppressed: set[Key]) -> bool:
        """Whether key's feasible range is narrower than its protection. The true count is
        feasible, so a greatest value that far above it settles it with one solve."""
        protection = self.counts[key].protection
        high = self.extreme(key, suppressed, -1.0)
        if high - self.counts[key].count >= protection:
            return False
        return high - self.extreme(key, suppressed, 1.0) < protection


def verified_suppression(
    counts: Mapping[Key, Count], equations: Sequence[Equation], suppressed: set[Key]
) -> set[Key]:
    """suppressed, with a further complement for each hidden count the reader's exact program
    still narrows, until none is. Hiding a count only widens the others' ranges, so a count
    found safe stays safe: each needs checking once, and again only after its own complement."""
    program = ReaderProgram(counts, equations)
    suppressed = set(suppressed)
    pending = sorted(suppressed, reverse=True)
    while pending:
        key = pending.pop()
        if not program.narrows(key, suppressed):
            continue
        ranges = feasible_ranges(counts, equations, suppressed)
        complement = choose_complement(key, counts, equations, ranges, suppressed)
        if complement is None:
            raise DisclosureError(f"no complement left to protect {key}")
        suppressed.add(complement)
        pending += [complement, key]
    return suppressed


def connected_systems(
    counts: Mapping[Key, Count], equations: Sequence[Equation]
) -> list[tuple[dict[Key, Count], list[Equation]]]:
    """The counts and sums split into systems that share no count (one definition's cohort
    sums, or a family of definitions adding up): each can be solved on its own, and small."""
    parent = {key: key for key in counts}

    def root(key: Key) -> Key:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for equation in equations:
        for member in equation.parts:
            parent[root(member)] = root(equation.total)
    systems: dict[Key, tuple[dict[Key, Count], list[Equation]]] = {}
    for key in sorted(counts):
        systems.setdefault(root(key), ({}, []))[0][key] = counts[key]
    for equation in equations:
        systems[root(equation.total)][1].append(equation)
    return list(systems.values())


def complementary_suppression(
    counts: Mapping[Key, Count], equations: Sequence[Equation]
) -> set[Key]:
    """The counts to hide: the primary ones and their complements, until none is exposed,
    in each system by propagation and then by its exact program."""
    hidden: set[Key] = set()
    for system_counts, system_equations in connected_systems(counts, equations):
        propagated = propagated_suppression(system_counts, system_equations)
        hidden |= verified_suppression(system_counts, system_equations, propagated)
    return hidden


def blocks(counts: Mapping[Key, Count]) -> dict[tuple[str, str], dict[Key, Count]]:
    """Counts by period and area: no sum spans two, so each is protected on its own."""
    grouped: dict[tuple[str, str], dict[Key, Count]] = defaultdict(dict)
    for key, c in counts.items():
        grouped[(key[1], key[2])][key] = c
    return grouped


def suppressed_counts(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every count of int_disclosure_counts with whether it is hidden and whether only as a
    complement (loaded as int_suppressed_counts for 50_published_metrics.sql)."""
    items = read_count_items(con)
    counts = merge_counts(items)
    equations = (
        partition_equations(items)
        + complementary_metric_equations(items)
        + declared_sum_equations(counts, read_declared_sums(con))
    )
    by_block: dict[tuple[str, str], list[Equation]] = defaultdict(list)
    for equation in equations:
        by_block[(equation.total[1], equation.total[2])].append(equation)
    hidden: set[Key] = set()
    for block, block_counts in sorted(blocks(counts).items()):
        hidden |= complementary_suppression(block_counts, by_block[block])
    rows = [
        {
            "metric_id": i.metric_id,
            "period": i.period,
            "la_code": i.la_code,
            "cohort": i.cohort,
            "cohort_value": i.cohort_value,
            "role": i.role,
            "suppressed": i.key in hidden,
            "secondary": i.key in hidden and not counts[i.key].primary_suppressed,
        }
        for i in items
    ]
    return pa.Table.from_pylist(rows, schema=SUPPRESSED_COUNTS_SCHEMA)
