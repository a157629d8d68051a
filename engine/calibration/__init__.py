"""Calibration files: where they come from (resolver), CALDB look-up, and the auxil download.

Order of search (details in :mod:`.resolver`): explicit path > ``$NUSKYBGD_AUXIL`` (auxil files) or
``$CALDB`` (CALDB products) > user cache filled by ``nuskybgd auxil fetch`` (auxil files) >
embedded nominal calibration.
"""

from .caldb import CALDB_PRODUCTS, CaldbMatch, caldb_lookup, read_caldb_index
from .fetch import DEFAULT_BASE_URL, fetch_auxil, load_manifest, sha256_file, verify_file
from .resolver import (
    AUXIL_FILES,
    NOMINAL_AVAILABLE,
    SOURCES,
    Resolved,
    auxil_env_dir,
    cache_dir,
    caldb_env_dir,
    register_nominal,
    resolve,
    survey,
)

__all__ = [
    "AUXIL_FILES",
    "CALDB_PRODUCTS",
    "SOURCES",
    "NOMINAL_AVAILABLE",
    "Resolved",
    "resolve",
    "register_nominal",
    "cache_dir",
    "auxil_env_dir",
    "caldb_env_dir",
    "survey",
    "CaldbMatch",
    "caldb_lookup",
    "read_caldb_index",
    "DEFAULT_BASE_URL",
    "fetch_auxil",
    "load_manifest",
    "sha256_file",
    "verify_file",
]
