"""Zoo's built-in plugins. Each module is found through the ``zoo.plugins`` entry points and uses
only the public contract in ``zoo`` (``zoo.hookimpl`` and the declaration types)."""
