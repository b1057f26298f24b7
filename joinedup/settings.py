"""All configuration in one typed settings object, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AGENCIES: tuple[str, ...] = ("education", "health", "care")
KEY_ENV = "JOINEDUP_KEY"
KEY_FILE_ENV = "JOINEDUP_KEY_FILE"
MIN_KEY_BYTES = 32


class MissingKeyError(RuntimeError):
    """No pseudonymisation key was configured."""


@dataclass(frozen=True)
class LinkSettings:
    """Thresholds of the probabilistic linker."""

    match_probability: float = 0.9  # a pair at or above this links
    review_probability: float = 0.5  # from here up to match_probability: clerical review
    keep_probability: float = 0.001  # scored pairs below this are counted, not kept
    max_em_iterations: int = 100
    bloom_bits: int = 1024
    bloom_hashes: int = 20
    address_bloom_hashes: int = 8  # an address has many bigrams: fewer bits set per bigram
    # Blocking rules and agency pairs worked on at once, in threads (numpy releases the GIL in
    # its large operations); the result does not depend on it
    threads: int = 2


@dataclass(frozen=True)
class Settings:
    """Where joinedup reads and writes, and how it behaves. Paths are absolute."""

    data_dir: Path = PROJECT_ROOT / "data"
    schemas_dir: Path = PROJECT_ROOT / "schemas"
    expectations_dir: Path = PROJECT_ROOT / "expectations"
    transforms_dir: Path = PROJECT_ROOT / "transforms"
    templates_dir: Path = PROJECT_ROOT / "joinedup" / "templates"
    link: LinkSettings = field(default_factory=LinkSettings)

    @property
    def raw_dir(self) -> Path:
        """Identifiable extracts as each agency's system exports them (synthetic only)."""
        return self.data_dir / "raw"

    @property
    def truth_dir(self) -> Path:
        """Ground truth of the synthetic areas, kept apart from every extract."""
        return self.data_dir / "truth"

    @property
    def landing_dir(self) -> Path:
        """Where agencies drop pseudonymised extracts: landing/<agency>/<period>/<extract>."""
        return self.data_dir / "landing"

    @property
    def store_dir(self) -> Path:
        """Immutable ingested copies, addressed by checksum."""
        return self.data_dir / "store"

    @property
    def work_dir(self) -> Path:
        """Intermediate outputs of a run (validation results, links)."""
        return self.data_dir / "work"

    @property
    def warehouse_path(self) -> Path:
        """The published DuckDB warehouse analysts open read-only."""
        return self.data_dir / "warehouse" / "joinedup.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @classmethod
    def from_env(cls) -> Settings:
        """Settings with JOINEDUP_DATA_DIR applied when set."""
        settings = cls()
        data_dir = os.environ.get("JOINEDUP_DATA_DIR")
        if data_dir:
            settings = replace(settings, data_dir=Path(data_dir).resolve())
        return settings


def load_key() -> bytes:
    """The pseudonymisation key from JOINEDUP_KEY or the file named by JOINEDUP_KEY_FILE."""
    value = os.environ.get(KEY_ENV)
    if value:
        key = value.encode()
    elif os.environ.get(KEY_FILE_ENV):
        key = Path(os.environ[KEY_FILE_ENV]).read_bytes().strip()
    else:
        raise MissingKeyError(
            f"No pseudonymisation key: set {KEY_ENV} or point {KEY_FILE_ENV} at a key file. "
            "The key is shared by the agencies' data controllers and never kept in the repository."
        )
    if len(key) < MIN_KEY_BYTES:
        raise MissingKeyError(f"The pseudonymisation key must be at least {MIN_KEY_BYTES} bytes.")
    return key
