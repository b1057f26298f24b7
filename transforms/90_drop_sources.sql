-- End of the build: drop the pseudonymised source tables (they hold the identity tokens),
-- the staging tables and the intermediate metric tables. All of them are TEMP tables, kept in
-- memory and never written to the warehouse file (a dropped ordinary table would leave its
-- bytes in the file's free blocks); dropping them explicitly makes the end state plain.
-- The published warehouse holds child_id as its only person key.

DROP TABLE src_education_census;
DROP TABLE src_education_exclusions;
DROP TABLE src_education_sen2;
DROP TABLE src_health_referrals;
DROP TABLE src_care_cin;
DROP TABLE src_care_lac;
DROP TABLE src_spine;
DROP TABLE src_links;

DROP TABLE stg_census;
DROP TABLE stg_exclusions;
DROP TABLE stg_sen2;
DROP TABLE stg_health_referrals;
DROP TABLE stg_cin;
DROP TABLE stg_lac;
DROP TABLE stg_person;

DROP TABLE int_latest_ehc_request;
DROP TABLE int_latest_exclusion;
DROP TABLE int_latest_health_referral;
DROP TABLE int_child_services;
DROP TABLE int_latest_cin_episode;
DROP TABLE int_latest_lac_episode;
DROP TABLE int_person_identifier;
DROP TABLE int_metric_units;
DROP TABLE int_metric_dimensions;
DROP TABLE int_metric_frames;
DROP TABLE int_unit_groups;
DROP TABLE int_unit_aggregates;
DROP TABLE int_metric_skeleton;
DROP TABLE int_metric_cells;
DROP TABLE int_ratio_parts;

DROP TABLE int_count_roles;
DROP TABLE int_count_aliases;
DROP TABLE int_count_sums;
DROP TABLE int_disclosure_counts;
DROP TABLE int_suppressed_counts;
