#!/usr/bin/env python
"""The bare script the default ``zoo train`` is compared with: what a user would write without Zoo.

It imports torch, loads scikit-learn's digits, splits them 70/15/15 and standardises the features
with the training split's statistics, trains the default model (the MLP 64-256-256-10, ReLU) with
the default optimizer (Adam, lr 1e-3) for the default 20 epochs of batches of 64 (400 steps), with
torch's default threads, and evaluates it on the test split. Nothing is logged. It prints one JSON
line: the steps, the loop's seconds and the test accuracy (an argument: train that many epochs instead). ``benchmarks/bench.py`` times the whole
process beside the whole ``zoo train`` command (no arguments), in the same repetition.
"""

import json
import sys
import time

import torch
from sklearn.datasets import load_digits
from torch import nn


def main(epochs: int = 20) -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x))
    n_train, n_val = int(0.7 * len(x)), int(0.15 * len(x))
    train, test = order[:n_train], order[n_train + n_val:]
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
    x = (x - mean) / std

    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    steps, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        perm = train[torch.randperm(len(train))]
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            steps += 1
    loop_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    print(json.dumps({"steps": steps, "loop_s": loop_s, "test_accuracy": accuracy}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))  # bench.py's tests train 1 epoch
