"""atheris fuzz targets, runner, seed corpus and the bounded CI run (see README.md)."""
