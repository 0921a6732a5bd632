# Zoo's own config groups. This folder is installed as the package `zoo.config.conf` (see
# pyproject.toml), so a wheel carries every YAML file here; Zoo reads them through importlib.resources.
