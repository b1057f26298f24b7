"""The attacker test of disclosure control: from ONLY the published tables of a built warehouse
(published_metrics and metric_catalogue) it tries to recover every suppressed count, and must
fail. Also the unit tests of joinedup.disclosure (secondary suppression).

The attacker writes every published figure as linear constraints on the unknown true counts
(integers >= 0) and solves, for each suppressed count, for its least and greatest feasible
value (scipy's MILP, HiGHS). It knows:
- the rules: a count shown under 'dfe' is exact; under 'nhs' it was rounded to 5, so the true
  count is within +-2 of it, and a shown non-zero nhs count is at least 8 (1-7 are '*');
  a suppressed count ('c', '*') is at least 1 (zeros are shown);
- the cohort structure: the non-'all' values of one metric, period, area and cohort dimension
  add up to 'all', and 'all' is one number whatever the dimension;
- counts with the same catalogue definition (numerator or denominator text) are one count,
  e.g. the known_to_services metrics' shared denominator;
- KNOWN_PARTITIONS: metrics whose numerators add up to their shared denominator (known to
  exactly 1, 2 or 3 services);
- KNOWN_ALIASES: one count under two texts (looked-after census pupils; census pupils with an
  EHC plan), and KNOWN_SUMS: texts adding up (contacts offered = not attended + attended),
  from the definitions;
- counts of a rule 'none' (extracts delivered) count no people: nothing to recover;
- rates: a shown proportion or rate v of counts n / d (dfe) means multiplier * n / d (100 for
  a percentage, the catalogue's `per` for a rate) is within half a unit of the last decimal of
  v, linear in n and d;
- ratios, as the catalogue's `ratio` says: the parts of a ratio cell are the rates of the
  metric `of` for the group (the sum of its `groups` members, e.g. SEN = K + E) and for the
  `reference` value (N), and the ratio of the two rates is within half a unit of its shown
  value.
It does not use medians (no linear information about counts) or nhs percentages (computed from
the rounded counts, which are shown). A dfe count is recovered if its feasible range is a
single value (min == max); an nhs count if its range is narrower than the 1-7 band (under 6),
i.e. the attacker learns more than '*' says.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from joinedup.disclosure import (
    CountItem,
    DisclosureError,
    ReaderProgram,
    complementary_metric_equations,
    complementary_suppression,
    connected_systems,
    declared_sum_equations,
    feasible_ranges,
    merge_counts,
    partition_equations,
    propagated_suppression,
)

SUPPRESSED = frozenset({"c", "*"})
# What the attacker knows of the rules (domain notes, section 6).
ROUNDING = {"dfe": 1, "nhs": 5}
BAND = {"dfe": (1, 4), "nhs": (1, 7)}
# How wide a hidden count's feasible range must stay: dfe, not a single value; nhs, the band's
# width, so the rounding intervals cannot narrow a hidden count below what '*' hides.
REQUIRED_WIDTH = {"dfe": 1, "nhs": 6}
# Metrics whose numerators add up to their common denominator, from their definitions.
KNOWN_PARTITIONS = (("known_to_services_1", "known_to_services_2", "known_to_services_3"),)
COUNT_ROLES = {
    "proportion": ("numerator", "denominator"),
    "rate": ("numerator", "denominator"),
    "count": ("numerator",),
    "median": ("denominator",),
    "mean": ("denominator",),
    "ratio": (),
}
UNBOUNDED = 10**7
# One count under two texts, from the definitions: (text, dimension ('' for all), value) pairs.
CENSUS_PUPILS = "Pupils on the school census in the period"
KNOWN_ALIASES = (
    (
        ("Census pupils with a looked-after episode open in the period", "", "all"),
        (CENSUS_PUPILS, "care_status", "lac"),
    ),
    (
        (
            "Children with an EHC plan in the period (census E, or a SEN2 plan issued on or "
            "before the period end)",
            "sen_status",
            "E",
        ),
        (CENSUS_PUPILS, "sen_status", "E"),
    ),
)
# Texts adding up in every cell they share: total text -> part texts.
KNOWN_SUMS = {
    "Care contacts attended plus not attended in the period": (
        "Care contacts not attended (DNA) in the period",
        "Health care contacts attended in the period",
    )
}

# A count: (definition text, period, area, cohort dimension ('' for 'all'), cohort value).
Key = tuple[str, str, str, str, str]


@dataclass
class Attack:
    """The attacker's linear system for one period and area."""

    variables: dict[Key, int] = field(default_factory=dict)
    rule: dict[Key, str] = field(default_factory=dict)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    rows: list[tuple[dict[int, float], float, float]] = field(default_factory=list)
    suppressed: set[Key] = field(default_factory=set)

    def index(self, key: Key) -> int:
        if key not in self.variables:
            self.variables[key] = len(self.variables)
            self.lower.append(0)
            self.upper.append(UNBOUNDED)
        return self.variables[key]

    def bound(self, key: Key, low: float, high: float) -> None:
        i = self.index(key)
        self.lower[i] = max(self.lower[i], low)
        self.upper[i] = min(self.upper[i], high)

    def constrain(self, terms: dict[Key, float], low: float, high: float) -> None:
        """low <= sum(coefficient * count) <= high."""
        row: dict[int, float] = defaultdict(float)
        for key, coefficient in terms.items():
            row[self.index(key)] += coefficient
        self.rows.append((dict(row), low, high))


@dataclass(frozen=True)
class Recovery:
    """A suppressed count and the attacker's feasible range for it."""

    key: Key
    rule: str
    low: int
    high: int

    @property
    def exact(self) -> bool:
        return self.low == self.high

    @property
    def narrowed(self) -> bool:
        return self.high - self.low < REQUIRED_WIDTH[self.rule]


def count_key(definition: str, period: str, la_code: str, cohort: str, value: str) -> Key:
    """A count's identity; a count KNOWN_ALIASES names under another text is that count."""
    cohort = "" if value == "all" else cohort
    for alias, same in KNOWN_ALIASES:
        if alias == (definition, cohort, value):
            definition, cohort, value = same
    return (definition, period, la_code, cohort, value)


def shown_range(text: str, rule: str) -> tuple[float, float]:
    """The true counts a published count text allows under its rule."""
    if text in SUPPRESSED:
        return 1, UNBOUNDED
    shown = int(text)
    if shown == 0:
        return 0, 0
    half = ROUNDING[rule] // 2
    return max(shown - half, BAND[rule][1] + 1 if half else shown), shown + half


def rate_terms(n: dict[Key, float], d: dict[Key, float], factor: float) -> dict[Key, float]:
    """The terms of sum(n) - factor * sum(d)."""
    terms: dict[Key, float] = defaultdict(float)
    for key, c in n.items():
        terms[key] += c
    for key, c in d.items():
        terms[key] -= factor * c
    return dict(terms)


def constrain_rate(
    attack: Attack,
    n: dict[Key, float],
    d: dict[Key, float],
    low: float,
    high: float,
) -> None:
    """low <= n / d <= high, written linearly: n - low * d >= 0 and n - high * d <= 0."""
    attack.constrain(rate_terms(n, d, low), 0, math.inf)
    attack.constrain(rate_terms(n, d, high), -math.inf, 0)


def half_unit(decimals: int) -> float:
    return 0.5 * 10.0**-decimals


def records(con: duckdb.DuckDBPyConnection, table: str) -> list[dict]:
    """A table's rows as dicts of plain Python values (a ratio's struct as a dict)."""
    relation = con.table(table)
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def read_published(con: duckdb.DuckDBPyConnection) -> tuple[list[dict], dict[str, dict]]:
    cells = records(con, "published_metrics")
    catalogue = {row["id"]: row for row in records(con, "metric_catalogue")}
    return cells, catalogue


def multiplier(entry: dict) -> float:
    """What a proportion (percent) or rate (per `per`) multiplies numerator / denominator by."""
    return 100.0 if entry["statistic"] == "proportion" else float(entry["per"])


def add_counts(attacks: dict[tuple[str, str], Attack], cells, catalogue) -> None:
    """Each published count: its range, and the cohort partitions it belongs to."""
    partitions: dict[tuple, tuple[Key | None, list[Key]]] = {}
    for c in cells:
        entry = catalogue[c["metric_id"]]
        if c["disclosure_rule"] == "none":
            continue
        attack = attacks[(c["period"], c["la_code"])]
        for role in COUNT_ROLES[entry["statistic"]]:
            text = c[f"published_{role}"]
            if text is None:
                continue
            key = count_key(entry[role], c["period"], c["la_code"], c["cohort"], c["cohort_value"])
            attack.rule[key] = c["disclosure_rule"]
            attack.bound(key, *shown_range(text, c["disclosure_rule"]))
            if text in SUPPRESSED:
                attack.suppressed.add(key)
            group = (entry[role], c["period"], c["la_code"], c["cohort"])
            total, parts = partitions.setdefault(group, (None, []))
            if c["cohort_value"] == "all":
                partitions[group] = (key, parts)
            else:
                parts.append(key)
    for (_, period, la_code, _), (total, parts) in partitions.items():
        if total is not None and parts:
            attack = attacks[(period, la_code)]
            attack.constrain({total: 1.0} | {p: -1.0 for p in parts}, 0, 0)


def add_known_partitions(attacks, cells, catalogue) -> None:
    """The numerators of KNOWN_PARTITIONS add up to their common denominator."""
    by_cell = {
        (c["metric_id"], c["period"], c["la_code"], c["cohort"], c["cohort_value"]) for c in cells
    }
    for family in KNOWN_PARTITIONS:
        if not set(family) <= set(catalogue):
            continue
        denominator = catalogue[family[0]]["denominator"]
        assert all(catalogue[m]["denominator"] == denominator for m in family)
        places = {k[1:] for k in by_cell if k[0] == family[0]}
        for period, la_code, cohort, value in places:
            terms = {
                count_key(catalogue[m]["numerator"], period, la_code, cohort, value): 1.0
                for m in family
            }
            terms[count_key(denominator, period, la_code, cohort, value)] = -1.0
            attacks[(period, la_code)].constrain(terms, 0, 0)


def add_known_sums(attacks: dict[tuple[str, str], Attack]) -> None:
    """KNOWN_SUMS in every period, area and cohort value where all its counts are published."""
    for attack_ in attacks.values():
        for key in list(attack_.variables):
            parts = [(part, *key[1:]) for part in KNOWN_SUMS.get(key[0], ())]
            if parts and all(p in attack_.variables for p in parts):
                attack_.constrain({key: 1.0} | {p: -1.0 for p in parts}, 0, 0)


def group_terms(definition: str, c: dict, cohort: str, members: Iterable[str]) -> dict[Key, float]:
    """A ratio group's count as the sum of its members' counts."""
    return {count_key(definition, c["period"], c["la_code"], cohort, m): 1.0 for m in members}


def ratio_groups(entry: dict) -> dict[str, list[str]]:
    """A ratio's groups, value -> member values (the catalogue's `ratio.groups`)."""
    return {g["value"]: list(g["members"]) for g in entry["ratio"]["groups"]}


def add_rates(attacks, cells, catalogue) -> None:
    """Shown dfe proportions and rates, and the ratios' rates and values."""
    for c in cells:
        entry = catalogue[c["metric_id"]]
        attack = attacks[(c["period"], c["la_code"])]
        value = c["published_value"]
        shown = value not in SUPPRESSED and value not in ("z", None)
        rated = entry["statistic"] in ("proportion", "rate")
        if rated and c["disclosure_rule"] == "dfe" and shown:
            m = multiplier(entry)
            h = half_unit(entry["decimals"])
            n = {count_key(entry["numerator"], *place(c)): 1.0}
            d = {count_key(entry["denominator"], *place(c)): 1.0}
            constrain_rate(attack, n, d, (float(value) - h) / m, (float(value) + h) / m)
        if entry["statistic"] == "ratio":
            add_ratio(attack, c, entry, catalogue)


def place(c: dict) -> tuple[str, str, str, str]:
    return c["period"], c["la_code"], c["cohort"], c["cohort_value"]


def add_ratio(attack: Attack, c: dict, entry: dict, catalogue: dict) -> None:
    """A ratio cell's parts (the group's and the reference value's rates of the metric its
    catalogue `ratio` names) and its value, as constraints on that metric's counts."""
    base = catalogue[entry["ratio"]["of"]]
    cohort = entry["cohort_dimensions"][0]
    m = multiplier(base)
    h = half_unit(base["decimals"])
    parts = {
        "numerator": ratio_groups(entry)[c["cohort_value"]],
        "denominator": [entry["ratio"]["reference"]],
    }
    terms = {
        role: (
            group_terms(base["numerator"], c, cohort, members),
            group_terms(base["denominator"], c, cohort, members),
        )
        for role, members in parts.items()
    }
    rates = {}
    for role, (n, d) in terms.items():
        text = c[f"published_{role}"]
        if text not in SUPPRESSED and text not in ("z", None):
            rates[role] = float(text)
            constrain_rate(attack, n, d, (rates[role] - h) / m, (rates[role] + h) / m)
    value = c["published_value"]
    if value not in SUPPRESSED and value not in ("z", None) and "denominator" in rates:
        n, d = terms["numerator"]
        r = float(value)
        hr = half_unit(entry["decimals"])
        low = (r - hr) * (rates["denominator"] - h) / m
        high = (r + hr) * (rates["denominator"] + h) / m
        constrain_rate(attack, n, d, max(low, 0.0), high)


def build_attacks(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], Attack]:
    """The attacker's constraints from the published tables, per period and area."""
    cells, catalogue = read_published(con)
    attacks: dict[tuple[str, str], Attack] = defaultdict(Attack)
    add_counts(attacks, cells, catalogue)
    add_known_partitions(attacks, cells, catalogue)
    add_known_sums(attacks)
    add_rates(attacks, cells, catalogue)
    return attacks


def extreme(attack: Attack, target: int, sense: float) -> float:
    """The least (sense 1) or greatest (sense -1) integer value of one count."""
    size = len(attack.variables)
    objective = np.zeros(size)
    objective[target] = sense
    constraints = []
    if attack.rows:
        matrix = np.zeros((len(attack.rows), size))
        for r, (row, _, _) in enumerate(attack.rows):
            for i, coefficient in row.items():
                matrix[r, i] = coefficient
        lows = [low for _, low, _ in attack.rows]
        highs = [high for _, _, high in attack.rows]
        constraints = [LinearConstraint(matrix, lows, highs)]
    result = milp(
        objective,
        constraints=constraints,
        integrality=np.ones(size),
        bounds=Bounds(attack.lower, attack.upper),
    )
    assert result.status == 0, f"attack infeasible or failed: {result.message}"
    return sense * result.fun


def attack(con: duckdb.DuckDBPyConnection) -> list[Recovery]:
    """The attacker's feasible range for every suppressed count of the published tables."""
    found = []
    for attack_ in build_attacks(con).values():
        for key in sorted(attack_.suppressed):
            i = attack_.variables[key]
            low = round(extreme(attack_, i, 1.0))
            high = round(extreme(attack_, i, -1.0))
            found.append(Recovery(key, attack_.rule[key], low, high))
    return found


def recovered(found: Iterable[Recovery]) -> list[Recovery]:
    return [r for r in found if r.exact or r.narrowed]


def test_attacker_recovers_no_suppressed_count_of_the_fixture(fixture_warehouse):
    """From the published tables alone, no suppressed count of the fixture warehouse can be
    pinned down, nor narrowed below its rule's suppression band."""
    with duckdb.connect(str(fixture_warehouse), read_only=True) as con:
        found = attack(con)
    assert len(found) > 10
    assert recovered(found) == []


def test_the_attacker_recovers_a_count_left_alone_in_its_partition():
    """The attacker is not toothless: with K suppressed and N, E and all shown, K = all - N - E."""
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE metric_catalogue AS SELECT 'm' AS id, 'proportion' AS statistic, "
            "'num' AS numerator, 'den' AS denominator, 'percent' AS unit, 1 AS decimals"
        )
        con.execute(
            "CREATE TABLE published_metrics AS SELECT * FROM (VALUES "
            "('m', 'p', 'a', 'sen_status', 'N', '20', '40', '50.0', 'dfe'), "
            "('m', 'p', 'a', 'sen_status', 'K', 'c', '10', 'c', 'dfe'), "
            "('m', 'p', 'a', 'sen_status', 'E', '0', '5', '0.0', 'dfe'), "
            "('m', 'p', 'a', 'sen_status', 'all', '23', '55', '41.8', 'dfe')) AS t(metric_id, "
            "period, la_code, cohort, cohort_value, published_numerator, "
            "published_denominator, published_value, disclosure_rule)"
        )
        found = attack(con)
    assert [(r.key[-1], r.low, r.high, r.exact) for r in found] == [("K", 3, 3, True)]


# --- joinedup.disclosure on hand-made counts -------------------------------------------------

PROTECTION = {"dfe": 1, "nhs": 6}


def item(
    value: str, count: int, rule: str = "dfe", cohort: str = "sen_status", **kw: str
) -> CountItem:
    """A count item as 49_disclosure_counts.sql would make it."""
    band, base = BAND[rule][1], ROUNDING[rule]
    shown = round(count / base) * base
    low = 0 if shown == 0 else max(shown - base // 2, band + 1 if base > 1 else 0)
    high = 0 if shown == 0 else shown + base // 2
    fields = dict(metric_id="m", role="numerator", definition="num") | kw
    return CountItem(
        period="p",
        la_code="a",
        cohort=cohort,
        cohort_value=value,
        disclosure_rule=rule,
        count=count,
        primary_suppressed=1 <= count <= band,
        shown_low=low,
        shown_high=high,
        protection=PROTECTION[rule],
        **fields,
    )


def hidden_values(items: list[CountItem]) -> set[str]:
    counts = merge_counts(items)
    equations = partition_equations(items) + complementary_metric_equations(items)
    return {key[-1] for key in complementary_suppression(counts, equations)}


def test_the_complement_is_the_smallest_shown_sibling_not_the_total():
    """K = 2 is hidden; its complement is E (6), not X (9), N (20) or all."""
    items = [item("N", 20), item("K", 2), item("E", 6), item("X", 9), item("all", 37)]
    assert hidden_values(items) == {"K", "E"}


def test_no_complement_where_two_counts_are_hidden_already():
    items = [item("N", 20), item("K", 2), item("E", 3), item("all", 25)]
    assert hidden_values(items) == {"K", "E"}


def test_all_is_one_count_across_cohort_dimensions():
    """'all' of sen_status and of sex is one count: one sum per dimension, sharing it."""
    items = [item("N", 5), item("K", 3), item("all", 8)]
    items += [item("F", 6, cohort="sex"), item("M", 2, cohort="sex"), item("all", 8, cohort="sex")]
    counts = merge_counts(items)
    equations = partition_equations(items)
    assert len(counts) == 5 and len(equations) == 2
    assert equations[0].total == equations[1].total
    assert hidden_values(items) == {"K", "N", "M", "F"}


def test_nhs_rounding_intervals_can_narrow_a_hidden_count_and_get_a_complement():
    """all 10 and N 8 are shown as 10 and 10 (8-12 each): K = 2 would be known to be 1-4."""
    items = [item("N", 8, "nhs"), item("K", 2, "nhs"), item("all", 10, "nhs")]
    assert hidden_values(items) == {"K", "N"}


def test_nhs_rounding_alone_protects_when_the_range_stays_wide():
    """all 23 (shown 25), N 10, E 10: K = 3 is anywhere in 1-11, wider than 1-7."""
    items = [item(v, n, "nhs") for v, n in (("N", 10), ("K", 3), ("E", 10), ("all", 23))]
    assert hidden_values(items) == {"K"}


def test_metrics_whose_numerators_add_up_to_a_shared_denominator_form_a_sum():
    """Known to 1, 2, 3 services: n1 + n2 + n3 = d, found from the counts themselves."""
    items = []
    for value, (n1, n2, n3) in (("N", (20, 9, 0)), ("all", (20, 9, 0))):
        for metric, n in (("k1", n1), ("k2", n2), ("k3", n3)):
            items.append(item(value, n, metric_id=metric, definition=f"num-{metric}"))
            items.append(
                item(value, n1 + n2 + n3, metric_id=metric, role="denominator", definition="d")
            )
    equations = complementary_metric_equations(items)
    assert sorted(e.total[-1] for e in equations) == ["N", "all"]
    assert all(len(e.parts) == 3 for e in equations)
    k3_off_by_one = item("N", 1, metric_id="k3", definition="num-k3")
    broken = [k3_off_by_one if i.key == k3_off_by_one.key else i for i in items]
    assert complementary_metric_equations(broken) == []


def known_to_services_items(cells: dict[str, tuple[int, int, int]], rule: str) -> list[CountItem]:
    """Known to 1, 2 and 3 services (numerators adding up to their shared denominator) in the
    given cohort values, with 'all' their sum."""
    totals = tuple(sum(ns[i] for ns in cells.values()) for i in range(3))
    items = []
    for value, ns in [*cells.items(), ("all", totals)]:
        for metric, n in zip(("k1", "k2", "k3"), ns, strict=True):
            items.append(item(value, n, rule, metric_id=metric, definition=f"num-{metric}"))
            items.append(
                item(value, sum(ns), rule, metric_id=metric, role="denominator", definition="d")
            )
    return items


def test_the_exact_check_protects_what_interval_propagation_misses():
    """Known to 3 services, A (3, '*'), keeps 1-7 by propagation, but combining the sums of
    all cells pins it to 1-6, narrower than the band: the exact program finds it and hides a
    further complement (known to 1 service, A), after which it narrows no hidden count."""
    items = known_to_services_items({"A": (49, 2, 3), "B": (45, 22, 2), "C": (43, 9, 1)}, "nhs")
    counts = merge_counts(items)
    equations = partition_equations(items) + complementary_metric_equations(items)
    propagated = propagated_suppression(counts, equations)
    k3_a = next(k for k in counts if k[0] == "num-k3" and k[-1] == "A")
    assert feasible_ranges(counts, equations, propagated)[k3_a] == (1, 7)
    program = ReaderProgram(counts, equations)
    exact = program.extreme(k3_a, propagated, 1.0), program.extreme(k3_a, propagated, -1.0)
    assert exact == (1, 6)
    hidden = complementary_suppression(counts, equations)
    assert {(k[0], k[-1]) for k in hidden - propagated} == {("num-k1", "A")}
    assert not any(program.narrows(k, hidden) for k in hidden)


def test_counts_split_into_systems_that_share_no_count():
    """One system per definition's cohort sums, and one for definitions that add up."""
    plain = [item("N", 5), item("K", 3), item("all", 8)]
    other = [item(v, n, definition="other") for v, n in (("N", 1), ("all", 1))]
    family = known_to_services_items({"A": (9, 2, 0)}, "dfe")
    items = plain + other + family
    counts = merge_counts(items)
    equations = partition_equations(items) + complementary_metric_equations(items)
    systems = connected_systems(counts, equations)
    assert sorted(len(c) for c, _ in systems) == [2, 3, 8]
    assert sum(len(e) for _, e in systems) == len(equations)


def test_a_dimension_that_does_not_partition_gives_no_sum_but_keeps_primary_suppression():
    """identifier-like values (one record under two values) are not summed to 'all': the small
    value is hidden, and no complement is taken for it."""
    items = [item(v, n, cohort="identifier", partitions=False) for v, n in (("a", 3), ("b", 9))]
    items += [item("all", 12)]
    assert partition_equations(items) == []
    assert hidden_values(items) == {"a"}


def test_a_sum_that_does_not_hold_fails_rather_than_being_assumed():
    """A dimension declared as partitioning whose values do not add up to 'all' fails."""
    items = [item("N", 5), item("K", 3), item("all", 9)]
    with pytest.raises(DisclosureError, match="does not hold"):
        partition_equations(items)


def test_an_alias_is_one_count_in_the_sums_of_both_texts():
    """Looked-after pupils (all) of one text and census pupils of care status lac of another
    are one count, in both texts' sums: hidden under one (3), it needs a complement in the
    other's (census pupils of care status none)."""
    lac_all = item(
        "all",
        3,
        definition="lac",
        count_definition="pupils",
        count_cohort="care_status",
        count_value="lac",
    )
    looked_after = [item("N", 2, definition="lac"), item("K", 1, definition="lac"), lac_all]
    pupils = [
        item("none", 98, cohort="care_status", definition="pupils"),
        item("lac", 3, cohort="care_status", definition="pupils"),
        item("all", 101, definition="pupils"),
    ]
    items = looked_after + pupils
    equations = partition_equations(items)
    alias = ("pupils", "p", "a", "care_status", "lac")
    assert lac_all.key == alias
    assert sum(alias in e.members for e in equations) == 2
    hidden = complementary_suppression(merge_counts(items), equations)
    assert ("pupils", "p", "a", "care_status", "none") in hidden


def test_declared_sums_hold_in_every_shared_cell():
    """Contacts offered = not attended + attended where all three are published: a hidden
    not-attended count (3) then needs a complement."""
    items = [
        item("all", 30, definition="offered"),
        item("all", 3, definition="dna"),
        item("all", 27, definition="attended"),
    ]
    counts = merge_counts(items)
    sums = {"offered": ["dna", "attended"]}
    equations = declared_sum_equations(counts, sums)
    assert len(equations) == 1
    assert len(complementary_suppression(counts, equations)) == 2
    broken = merge_counts([*items[:2], item("all", 26, definition="attended")])
    with pytest.raises(DisclosureError, match="does not hold"):
        declared_sum_equations(broken, sums)


def test_cells_naming_one_count_must_agree():
    """Two cells with one catalogue definition but different counts fail the build."""
    items = [item("N", 5, metric_id="a"), item("N", 6, metric_id="b")]
    with pytest.raises(DisclosureError, match="different counts"):
        merge_counts(items)


if __name__ == "__main__":
    # Attack a built warehouse: python -m tests.test_disclosure <warehouse.duckdb>
    with duckdb.connect(sys.argv[1], read_only=True) as connection:
        results = attack(connection)
    bad = recovered(results)
    for r in bad:
        print("recovered" if r.exact else "narrowed", r.rule, r.key, r.low, r.high)
    exact = sum(r.exact for r in bad)
    print(
        f"{len(results)} suppressed counts; {exact} recovered exactly, "
        f"{len(bad)} recovered in all (exact, or nhs narrowed below the 1-7 band)"
    )
