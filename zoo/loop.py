"""Moved to :mod:`zoo.training.loop`: this alias keeps old imports working until they are updated."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("zoo.training.loop")
