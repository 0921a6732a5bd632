"""Moved to :mod:`zoo.plugin.hookspecs`: this alias keeps old imports working until they are updated."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("zoo.plugin.hookspecs")
