"""Tests of joinedup.link.spine: constrained clustering and stable child ids."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from joinedup.link.spine import (
    AGENCY_CONFLICT,
    NHS_CONFLICT,
    UPN_CONFLICT,
    IdState,
    assign_child_ids,
    child_id_of,
    cluster_records,
    empty_id_state,
    read_id_state,
    write_id_state,
)


def records(*rows: tuple[str, str, str | None, str | None]) -> pd.DataFrame:
    """(agency, person_token, nhs_token, upn_token) rows."""
    return pd.DataFrame(rows, columns=["agency", "person_token", "nhs_token", "upn_token"])


def links(*rows: tuple[str, str, str, str, float]) -> pd.DataFrame:
    columns = ["agency_l", "person_token_l", "agency_r", "person_token_r", "match_weight"]
    return pd.DataFrame(list(rows), columns=columns)


NO_LINKS = links()


def children(clustered) -> dict[str, int]:
    return dict(zip(clustered.records.person_token, clustered.records.cluster, strict=True))


# ----------------------------------------------------------------------------------------------
# Clustering under constraints
# ----------------------------------------------------------------------------------------------


def test_a_link_that_joins_two_records_of_one_agency_is_the_weakest_and_is_refused() -> None:
    people = records(
        ("education", "e1", None, None),
        ("education", "e2", None, None),
        ("health", "h1", None, None),
        ("care", "c1", None, None),
    )
    cross = links(
        ("education", "e1", "health", "h1", 10.0),
        ("health", "h1", "care", "c1", 8.0),
        ("education", "e2", "care", "c1", 5.0),
    )
    clustered = cluster_records(people, NO_LINKS, cross)
    child = children(clustered)
    assert child["e1"] == child["h1"] == child["c1"] != child["e2"]
    assert list(clustered.kept.match_weight) == [10.0, 8.0]
    assert list(clustered.refused.reason) == [AGENCY_CONFLICT]


def test_a_child_holds_at_most_one_nhs_number_token() -> None:
    people = records(
        ("education", "e1", None, None),
        ("health", "h1", "nhsA", None),
        ("care", "c1", "nhsB", None),
    )
    cross = links(("education", "e1", "health", "h1", 10.0), ("education", "e1", "care", "c1", 8.0))
    clustered = cluster_records(people, NO_LINKS, cross)
    child = children(clustered)
    assert child["e1"] == child["h1"] != child["c1"]
    assert list(clustered.refused.reason) == [NHS_CONFLICT]


def test_a_direct_link_over_two_nhs_numbers_is_kept_and_listed_for_correction() -> None:
    """A mistyped or wrong number on one record: the link's own records hold the two numbers,
    so the model weighed the disagreement; the link stays and is listed as a conflict."""
    people = records(("health", "h1", "nhsA", None), ("care", "c1", "nhsB", None))
    clustered = cluster_records(people, NO_LINKS, links(("health", "h1", "care", "c1", 20.0)))
    child = children(clustered)
    assert child["h1"] == child["c1"]
    assert clustered.refused.empty
    assert list(clustered.identifier_conflicts.reason) == [NHS_CONFLICT]


def test_a_third_nhs_number_never_joins_a_child_that_kept_two() -> None:
    people = records(
        ("health", "h1", "nhsA", None),
        ("care", "c1", "nhsB", None),
        ("education", "e1", None, None),
        ("health", "h2", "nhsC", None),
    )
    cross = links(
        ("health", "h1", "care", "c1", 20.0),
        ("education", "e1", "care", "c1", 15.0),
        ("education", "e1", "health", "h2", 12.0),
    )
    clustered = cluster_records(people, NO_LINKS, cross)
    child = children(clustered)
    assert child["h1"] == child["c1"] == child["e1"] != child["h2"]
    assert list(clustered.refused.reason) == [NHS_CONFLICT]


def test_a_child_holds_at_most_one_upn_token() -> None:
    people = records(
        ("education", "e1", None, "upnX"),
        ("health", "h1", None, None),
        ("care", "c1", None, "upnY"),
    )
    cross = links(("health", "h1", "care", "c1", 10.0), ("education", "e1", "health", "h1", 8.0))
    clustered = cluster_records(people, NO_LINKS, cross)
    child = children(clustered)
    assert child["h1"] == child["c1"] != child["e1"]
    assert list(clustered.refused.reason) == [UPN_CONFLICT]


def test_duplicate_records_of_one_agency_join_one_child_with_the_other_agencies() -> None:
    people = records(
        ("education", "e1", None, "upnX"),
        ("health", "h1", "nhsA", None),
        ("health", "h2", None, None),
        ("care", "c1", "nhsA", "upnX"),
    )
    duplicates = links(("health", "h1", "health", "h2", 9.0))
    cross = links(("education", "e1", "health", "h1", 10.0), ("health", "h2", "care", "c1", 7.0))
    clustered = cluster_records(people, duplicates, cross)
    assert len(set(children(clustered).values())) == 1
    assert clustered.refused.empty
    assert len(clustered.kept) == 3


def test_without_a_duplicate_link_two_records_of_one_agency_stay_apart() -> None:
    """The same cross links as above, but h1 and h2 are not known duplicates."""
    people = records(
        ("education", "e1", None, None), ("health", "h1", None, None), ("health", "h2", None, None)
    )
    cross = links(
        ("education", "e1", "health", "h1", 10.0), ("education", "e1", "health", "h2", 7.0)
    )
    child = children(cluster_records(people, NO_LINKS, cross))
    assert child["e1"] == child["h1"] != child["h2"]


def test_duplicate_link_over_its_own_two_numbers_is_kept_where_its_records_say_one_child() -> None:
    """An agency registered one child twice, one number mistyped or not traced: the records
    agree on the other number, or on forename, birth date and home (twins never do). The link
    stands and the agency is told."""
    people = records(("health", "h1", "nhsA", None), ("health", "h2", "nhsB", None))
    duplicate = links(("health", "h1", "health", "h2", 16.0)).assign(one_child=True)
    clustered = cluster_records(people, duplicate, NO_LINKS)
    child = children(clustered)
    assert child["h1"] == child["h2"]
    assert clustered.refused.empty
    assert list(clustered.identifier_conflicts.reason) == [NHS_CONFLICT]


def test_duplicate_link_over_two_nhs_numbers_at_two_addresses_is_refused() -> None:
    """Elsewhere an agency's two numbers say two children: look-alikes at two addresses."""
    people = records(("health", "h1", "nhsA", None), ("health", "h2", "nhsB", None))
    duplicate = links(("health", "h1", "health", "h2", 12.0)).assign(one_child=False)
    clustered = cluster_records(people, duplicate, NO_LINKS)
    child = children(clustered)
    assert child["h1"] != child["h2"]
    assert list(clustered.refused.reason) == [NHS_CONFLICT]


def test_a_third_number_never_joins_duplicates_that_kept_two() -> None:
    people = records(
        ("care", "c1", None, "upnA"), ("care", "c2", None, "upnB"), ("care", "c3", None, "upnC")
    )
    duplicates = links(("care", "c1", "care", "c2", 20.0), ("care", "c2", "care", "c3", 15.0))
    duplicates = duplicates.assign(one_child=True)
    clustered = cluster_records(people, duplicates, NO_LINKS)
    child = children(clustered)
    assert child["c1"] == child["c2"] != child["c3"]
    assert list(clustered.refused.reason) == [UPN_CONFLICT]


# ----------------------------------------------------------------------------------------------
# Stable child ids
# ----------------------------------------------------------------------------------------------


def clusters(*groups: list[tuple[str, str]]) -> pd.DataFrame:
    """Records (agency, person_token) grouped into numbered clusters."""
    rows = [(a, t, n) for n, group in enumerate(groups) for a, t in group]
    return pd.DataFrame(rows, columns=["agency", "person_token", "cluster"])


def ids(assigned: pd.DataFrame, child_ids: pd.Series) -> dict[str, str]:
    return dict(zip(assigned.person_token, child_ids, strict=True))


E1, E2, H1, H2, C1 = (
    ("education", "e1"),
    ("education", "e2"),
    ("health", "h1"),
    ("health", "h2"),
    ("care", "c1"),
)


def first_run() -> tuple[dict[str, str], IdState]:
    """Two children in 2024-25: {e1, h1, c1} and {e2}."""
    groups = clusters([E1, H1, C1], [E2])
    child_ids, state = assign_child_ids(groups, empty_id_state(), "2024-25")
    return ids(groups, child_ids), state


def test_new_children_are_named_by_their_smallest_record_key() -> None:
    child, state = first_run()
    assert child["e1"] == child["h1"] == child["c1"] == child_id_of("care", "c1")
    assert child["e2"] == child_id_of("education", "e2")
    assert set(state.registry.first_seen_period) == {"2024-25"}
    assert state.history.empty


def test_rerun_with_the_same_clusters_gives_identical_ids_and_state() -> None:
    child, state = first_run()
    shuffled = clusters([E2], [C1, E1, H1])  # other cluster numbers, other row order
    child_ids, again = assign_child_ids(shuffled, state, "2024-25")
    assert ids(shuffled, child_ids) == child
    pd.testing.assert_frame_equal(again.registry, state.registry)
    assert again.history.empty


def test_new_period_records_join_existing_children_which_keep_their_ids() -> None:
    child, state = first_run()
    grown = clusters([E1, H1, C1, H2], [E2], [("care", "c9")])
    child_ids, after = assign_child_ids(grown, state, "2025-26")
    now = ids(grown, child_ids)
    assert now["h2"] == now["e1"] == child["e1"]
    assert now["e2"] == child["e2"]
    assert now["c9"] == child_id_of("care", "c9")
    registry = after.registry.set_index("person_token")
    assert registry.loc["e1", "first_seen_period"] == "2024-25"
    assert registry.loc["e1", "last_seen_period"] == "2025-26"
    assert registry.loc["h2", "first_seen_period"] == "2025-26"


def test_a_merge_keeps_the_majority_id_and_records_the_retired_one() -> None:
    child, state = first_run()
    merged = clusters([E1, H1, C1, E2])
    child_ids, after = assign_child_ids(merged, state, "2025-26")
    assert set(child_ids) == {child["e1"]}
    history = after.history.to_dict("records")
    assert history == [{"retired_id": child["e2"], "child_id": child["e1"], "period": "2025-26"}]


def test_a_split_leaves_the_id_with_the_larger_part_and_gives_the_minority_a_fresh_one() -> None:
    child, state = first_run()
    split = clusters([E1, H1], [C1], [E2])
    child_ids, after = assign_child_ids(split, state, "2025-26")
    now = ids(split, child_ids)
    assert now["e1"] == now["h1"] == child["e1"]
    # c1 named the old child, so its own id was used before: the new id is salted
    assert now["c1"] not in set(child.values())
    assert now["c1"] == child_id_of("care", "c1", salt=1)
    assert after.history.empty


def test_ties_go_to_the_id_first_seen_earliest() -> None:
    _, state = first_run()
    registry = state.registry.copy()
    registry.loc[registry.person_token == "e2", "first_seen_period"] = "2023-24"
    older = IdState(registry=registry, history=state.history)
    both = clusters([E1, E2])  # one vote for each id
    child_ids, _ = assign_child_ids(both, older, "2025-26")
    assert set(child_ids) == {child_id_of("education", "e2")}


def test_an_absent_record_keeps_its_row_and_follows_a_merge() -> None:
    child, state = first_run()
    without_c1 = clusters([E1, H1, E2])
    _, after = assign_child_ids(without_c1, state, "2025-26")
    registry = after.registry.set_index("person_token")
    assert registry.loc["c1", "child_id"] == child["e1"]
    assert registry.loc["c1", "last_seen_period"] == "2024-25"
    assert registry.loc["e2", "child_id"] == child["e1"]


def test_registry_round_trips_through_its_directory(tmp_path: Path) -> None:
    _, state = first_run()
    merged = clusters([E1, H1, C1, E2])
    _, after = assign_child_ids(merged, state, "2025-26")
    write_id_state(after, tmp_path / "spine")
    read = read_id_state(tmp_path / "spine")
    pd.testing.assert_frame_equal(read.registry, after.registry)
    pd.testing.assert_frame_equal(read.history, after.history)
    assert sorted(p.name for p in (tmp_path / "spine").iterdir()) == [
        "id_history.parquet",
        "registry.parquet",
    ]


@pytest.mark.parametrize("period", ["2024-25", None])
def test_reading_an_empty_directory_gives_an_empty_state(tmp_path: Path, period) -> None:
    state = read_id_state(tmp_path)
    groups = clusters([E1])
    child_ids, after = assign_child_ids(groups, state, period)
    assert list(child_ids) == [child_id_of("education", "e1")]
    assert after.registry.first_seen_period.tolist() == [period]


def test_a_conflicting_child_beside_a_clean_one_keeps_links_in_weight_order() -> None:
    """Components without a possible conflict are kept whole, the others go link by link: one
    call gives both the same answer as each alone, kept links strongest first, and every
    cluster is numbered by its smallest record."""
    people = records(
        ("care", "c1", None, None),
        ("education", "e1", None, None),
        ("health", "h1", "N1", None),
        ("care", "c2", "N2", None),
        ("education", "e2", None, None),
        ("health", "h2", "N3", None),
    )
    cross = links(
        ("education", "e1", "health", "h1", 9.0),  # clean: one number in the child
        ("health", "h1", "care", "c1", 5.0),
        ("education", "e2", "health", "h2", 8.0),  # conflicting: N2 and N3 meet through e2
        ("education", "e2", "care", "c2", 7.0),
    )
    clustered = cluster_records(people, NO_LINKS, cross)
    child = children(clustered)
    assert child["c1"] == child["e1"] == child["h1"] == 0  # 'care|c1' is the smallest record
    assert child["e2"] == child["h2"] != child["c2"]
    assert list(clustered.kept.match_weight) == [9.0, 8.0, 5.0]
    assert list(clustered.refused.reason) == [NHS_CONFLICT]
