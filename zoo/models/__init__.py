"""Trained models: what a finished run leaves behind, and everything that uses it.

It owns the self-contained model (:mod:`.packaged`: :class:`ZooModel`, a trained network together
with the preprocessing its data went through and the task that gives its output a meaning, saved
as a weights file and a JSON record), the conversions between what a person has (a DataFrame, a CSV
row, an array, a text prompt, a graph, an image file) and a batch (:mod:`.io`), naming a model
(:mod:`.reference`: a run id, ``runs:/``, ``models:/name/version``, ``models:/name@alias``), and
what the commands do with one: log it at the end of a run (:mod:`.log`), register it
(:mod:`.registry`), evaluate it (:mod:`.evaluate`), predict with it (:mod:`.predict`), serve it
(:mod:`.serve`) and start a new run from its weights (:mod:`.init`).

It may import :mod:`zoo.errors`, :mod:`zoo.plugin` (to rebuild a network by its architecture's
name, through the installed plugins only), :mod:`zoo.tracking` (every MLflow call: the pyfunc
wrapper, the registry, downloads) and torch; never Hydra's composition, the training loop or the
command line. ``zoo.load_model`` is :func:`zoo.models.reference.load_model`.
"""
