"""A plugin that fails to import (a dependency its author forgot to declare)."""

import zoo_nonexistent_dependency  # noqa: F401

import zoo


@zoo.hookimpl
def zoo_architectures():
    return []
