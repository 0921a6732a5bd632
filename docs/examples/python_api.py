"""Zoo from Python: train a model, register it, load it back by name, predict on raw rows.

Run it as it is (``python docs/examples/python_api.py``): it writes into the store MLFLOW_TRACKING_URI
names, else ./mlruns/mlflow.db. tests/test_models.py runs it.
"""

import tempfile

import pandas as pd
from sklearn.datasets import load_iris

import zoo
from zoo.config import compose, register_configs
from zoo.plugin.registry import default_registry

# 1. train: compose the config as `zoo train` does, then zoo.train(cfg) returns the metrics and the run id
register_configs(default_registry())  # every plugin's model=/data= choices
cfg = compose(["data=iris", "trainer.max_epochs=30", "tracking.system_metrics=false",
               f"paths.output_dir={tempfile.mkdtemp()}",  # checkpoints (zoo train uses Hydra's run folder)
               "tracking.register=iris-mlp", "tracking.register_alias=champion"])
metrics = zoo.train(cfg)
print(f"run {metrics['run_id']}: test/accuracy={metrics['test/accuracy']:.3f}")

# 2. load it by name: the torch module with the data's preprocessing and the task's answers
model = zoo.load_model("models:/iris-mlp@champion")
print(model)                       # ZooModel(mlp on iris: tabular 4 -> classification, run ...)

# 3. predict on raw rows, in centimetres as scikit-learn gives them; columns by name
rows = load_iris(as_frame=True).data.head(5)
print(model.predict(rows))         # a column "label": setosa, ...
print(model.predict(rows, output="all").round(3).to_string())  # ... and probabilities_<class>
assert isinstance(model.net, __import__("torch").nn.Module)  # the bare network, for fine-tuning by hand
