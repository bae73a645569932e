"""Package layout that `pyproject.toml` cannot express: the migrations ship inside `app`.

The Alembic scripts live in the top-level `migrations/` directory (where `alembic` run from the
repository finds them, see alembic.ini). A wheel installs them as `app/migrations/`, so an
installed node migrates with no source tree beside it (`app.storage.migrate` looks there first).
Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["app", "app.*", "signet_tx", "signet_tx.*"]),
        "app.migrations",
        "app.migrations.versions",
    ],
    package_dir={"app.migrations": "migrations"},
    package_data={
        "app": ["py.typed"],
        "app.migrations": ["script.py.mako"],
        "app.console": ["templates/*.html", "static/*"],  # the console's pages and assets
    },
)
