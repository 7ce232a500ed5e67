"""What the bench scripts share: paths, the data set, a standalone Django on a temporary SQLite.

Run as `python bench/<name>.py`, so this folder is on sys.path and `import common` finds this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASETS = Path(os.environ.get("PICTOR_DATASETS") or REPO.parent / "shared" / "datasets")
HYMENOPTERA = DATASETS / "hymenoptera_data"
OUT_DIR = REPO / "bench" / "out"


def django_setup(data_dir: Path, **env: str) -> None:
    """Django in this process on the embedded default (SQLite, no services) under data_dir, migrated."""
    for name in ("DATABASE_URL", "REDIS_URL", "PYTEST_VERSION"):
        os.environ.pop(name, None)
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings", DEBUG="true", PICTOR_DATA_DIR=str(data_dir), **env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
