import pytest

from conftest import datasets_dir

HYMENOPTERA = datasets_dir() / "hymenoptera_data"
needs_hymenoptera = pytest.mark.skipif(
    not HYMENOPTERA.is_dir(),
    reason=f"hymenoptera_data not found at {HYMENOPTERA}; set PICTOR_DATASETS to the datasets dir",
)
