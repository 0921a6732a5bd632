"""One architecture on one data kind: the smallest compatible dataset, one batch, and the checks
(builds, output shape, gradients, overfit, state_dict, determinism)."""

from __future__ import annotations

import math

from zoo.testing.kit import BATCH, DROP, EVAL_EVERY, LR, REPORT_STEPS, SEED, STEPS, Kit, Param, Skip
from zoo.testing.report import diff, examples, kwargs, raised, shape_of


class Case:
    """One architecture on one data kind: the smallest compatible dataset, one batch."""

    def __init__(self, kit: Kit, param: Param, check: str):
        self.kit, self.param, self.check = kit, param, check
        self.entry = kit.registry.architectures[param.name]
        decl = self.entry.decl
        names = [n for n, e in kit.registry.datasets.items()
                 if e.decl.kind == param.kind and (decl.tasks is None or e.decl.task in decl.tasks)]
        if not names:
            tasks = f" for tasks {', '.join(decl.tasks)}" if decl.tasks else ""
            raise Skip(f"{param.label}: no registered dataset of kind '{param.kind}'{tasks}; "
                        f"kind '{param.kind}' is not checked")
        loaded = {n: kit.load(n) for n in names}
        ok = {n: s for n, s in loaded.items() if not isinstance(s, str) and len(s.train)}
        if not ok:
            self.fail(f"no dataset of kind '{param.kind}' loads: "
                      + "; ".join(f"data={n}: {why if isinstance(why, str) else 'empty training split'}"
                                  for n, why in loaded.items()))
        self.data = min(ok, key=lambda n: (len(ok[n].train), n))
        self.splits = ok[self.data]
        self.info = self.splits.info
        if self.info.task not in kit.registry.tasks:
            self.fail(f"data={self.data} has unknown task '{self.info.task}'")
        self.task = kit.registry.task(self.info.task)
        batch = next(iter(self.splits.train.batches(BATCH, shuffle=False)))
        self.inputs, self.target = batch
        extra = sorted(set(decl.smoke) - set(decl.defaults))
        if extra:
            self.fail(f"smoke settings {extra} are not among its defaults ({', '.join(decl.defaults) or 'none'})")

    def fail(self, message: str):
        self.kit.fail(self.param, self.check, message)

    # ---- helpers

    def build(self, smoke: bool = True, seed: int = SEED):
        """The model through the factory (``Registry.create_model``), as ``zoo train`` builds it."""
        import torch

        decl = self.entry.decl
        overrides = dict(decl.smoke) if smoke else {}
        torch.manual_seed(seed)
        try:
            model = self.kit.registry.create_model(self.param.name, self.info, **overrides)
        except Exception as exc:
            which = "defaults" if not smoke else "defaults + smoke settings"
            self.fail(raised(f"build(info of data={self.data}, {kwargs({**decl.defaults, **overrides})}) "
                             f"with its {which}", exc))
        return model  # a torch.nn.Module: the factory refuses anything else

    def forward(self, model, train: bool = False):
        model.train(train)
        try:
            return model(self.inputs)
        except Exception as exc:
            self.fail(raised(f"forward on a batch of data={self.data} (inputs {shape_of(self.inputs)})", exc))

    def loss(self, output):
        import torch

        try:
            value = self.task.loss(output, self.target, self.inputs)
        except Exception as exc:
            self.fail(raised(f"the {self.task.name} loss on its output {shape_of(output)} "
                              f"(target {shape_of(self.target)})", exc))
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            self.fail(f"the {self.task.name} loss gave {value!r}, expected a scalar tensor")
        return value

    def eval_output(self, model):
        import torch

        with torch.no_grad():
            return self.forward(model, train=False)

    def eval_loss(self, model) -> float:
        import torch

        with torch.no_grad():
            return float(self.loss(self.forward(model, train=False)))

    def shape_problem(self, output) -> str | None:
        """Why ``output`` is not what the task expects for this batch, or None."""
        return self.task.output_problem(self.info, self.inputs, self.target, output, f" for data={self.data}")

    # ---- the checks

    def check_builds(self):
        model = self.build(smoke=False)
        problem = self.shape_problem(self.eval_output(model))
        if problem:
            self.fail(f"with its defaults: {problem}")

    def check_output_shape(self):
        problem = self.shape_problem(self.eval_output(self.build()))
        if problem:
            self.fail(problem)

    def check_gradients(self):
        import torch

        model = self.build()
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not params:
            self.fail("it has no trainable parameters")
        loss = self.loss(self.forward(model, train=True))
        if not torch.isfinite(loss):
            self.fail(f"the loss of the freshly built model is {float(loss)} on data={self.data}")
        try:
            loss.backward()
        except Exception as exc:
            self.fail(raised("backward", exc))
        none = [n for n, p in params if p.grad is None]
        bad = [(n, int((~torch.isfinite(p.grad)).sum()), p.grad.numel()) for n, p in params
               if p.grad is not None and not torch.isfinite(p.grad).all()]
        zero = [n for n, p in params if p.grad is not None and not p.grad.any()]
        total = f"of {len(params)} trainable parameters"
        if none:
            what = f"parameter {none[0]}" if len(none) == 1 else f"{len(none)} {total} ({', '.join(none[:6])}{', ...' if len(none) > 6 else ''})"
            self.fail(f"{what} got no gradient (grad is None) from one backward pass on data={self.data}")
        if bad:
            self.fail(f"{len(bad)} {total} got non-finite gradients: "
                      + ", ".join(f"{n} ({k} of {m} entries nan/inf)" for n, k, m in bad[:6]))
        if zero:
            what = f"parameter {zero[0]}" if len(zero) == 1 else f"{len(zero)} {total} ({', '.join(zero[:6])}{', ...' if len(zero) > 6 else ''})"
            self.fail(f"{what} got an all-zero gradient from one backward pass on data={self.data}")

    def check_overfit(self):
        import torch

        model = self.build()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            self.fail("it has no trainable parameters")
        opt = torch.optim.Adam(params, lr=LR)
        first = self.eval_loss(model)
        if not math.isfinite(first):
            self.fail(f"the loss of the freshly built model is {first} on data={self.data}")
        goal = (1 - DROP) * first
        best, last = first, first
        for step in range(1, STEPS + 1):
            opt.zero_grad(set_to_none=True)
            loss = self.loss(self.forward(model, train=True))
            if not torch.isfinite(loss):
                self.fail(f"the loss became {float(loss)} at step {step} of Adam (lr {LR}) on one batch "
                          f"of data={self.data} (it started at {first:.4g})")
            loss.backward()
            opt.step()
            if step % EVAL_EVERY == 0 or step == STEPS:
                last = self.eval_loss(model)
                best = min(best, last)
                if last <= goal:
                    return
        n = examples(self.target, self.inputs)
        self.fail(f"loss {first:.4g} -> {last:.4g} (best {best:.4g}) after {STEPS} Adam steps (lr {LR}) "
                  f"on one batch of {n} of data={self.data}: a {100 * (1 - last / first):.1f}% drop, "
                  f"need >= {100 * DROP:.0f}% (loss <= {goal:.4g})")

    def check_state_dict(self):
        import io

        import torch

        model = self.build(seed=SEED)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad] or [torch.zeros(1)], lr=LR)
        opt.zero_grad()
        loss = self.loss(self.forward(model, train=True))
        if loss.requires_grad:
            loss.backward()
            opt.step()  # move the weights and running statistics away from their initial values
        want = self.eval_output(model)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        try:
            state = torch.load(buf, weights_only=True)
        except Exception as exc:
            self.fail(raised("torch.load(weights_only=True) of its state_dict", exc))
        fresh = self.build(seed=SEED + 1)
        try:
            fresh.load_state_dict(state)
        except Exception as exc:
            self.fail(raised(f"a fresh build's load_state_dict (seed {SEED + 1})", exc))
        found = diff(want, self.eval_output(fresh))
        if found:
            self.fail(f"a fresh build (seed {SEED + 1}) loaded with the trained model's state_dict gives "
                      f"different outputs on data={self.data}: {found}; keep all state in parameters or "
                      f"persistent buffers")

    def check_determinism(self):
        a, b = self.build(seed=SEED), self.build(seed=SEED)
        sa, sb = a.state_dict(), b.state_dict()
        if list(sa) != list(sb):
            self.fail(f"two builds with seed {SEED} have different state_dict keys: "
                      f"{sorted(set(sa) ^ set(sb))[:6]}")
        for key in sa:
            found = diff(sa[key], sb[key])
            if found:
                self.fail(f"two builds with seed {SEED} differ on the CPU: {key}: {found}; draw every "
                          f"random number from torch's generator")
        found = diff(self.eval_output(a), self.eval_output(b))
        if found:
            self.fail(f"two builds with seed {SEED} give different outputs on the CPU on data={self.data}: {found}")

    def check_report(self):
        """The architecture's ``report`` on a model trained a few steps: it runs, and the files it returns exist."""
        import tempfile
        from pathlib import Path

        import torch

        report = self.entry.decl.report
        if report is None:
            raise Skip(f"{self.param.label}: it declares no report")
        model = self.build()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params or [torch.zeros(1)], lr=LR)
        for _ in range(REPORT_STEPS if params else 0):  # a tiny trained model, as after a real run
            opt.zero_grad(set_to_none=True)
            self.loss(self.forward(model, train=True)).backward()
            opt.step()
        model.eval()
        with tempfile.TemporaryDirectory(prefix="zoo-report-") as folder:
            try:
                paths = list(report(model, self.splits, Path(folder)) or ())
            except Exception as exc:
                self.fail(raised(f"report(model, splits of data={self.data}, folder)", exc))
            missing = [str(p) for p in paths if not Path(p).is_file()]
            if missing:
                self.fail(f"report returned {missing[0]}, which is not a file it wrote (data={self.data})")
