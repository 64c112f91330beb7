r"""Alignment solvers: learn a map f from text to image space on the training pairs.

This is the simulator's abstraction of what cross-attention's key/value projections learn in a latent diffusion
model (the paper's supervised graph alignment). Three solvers share one interface (minDiffusion/k-diffusion
style: interchangeable parts, one signature):

``solver.prepare(clean, seed) -> fitter``  (once per seed, on the clean training set: calibration / pretraining)
``fitter.fit(data) -> model``              (at every sweep point, on the current — poisoned — training set)
``model.predict(text) -> image-space outputs``, ``model.train_loss``

- :class:`RidgeSolver` — closed form :math:`W = (A + \lambda I)^{-1} B`, :math:`A = T^\top T`,
  :math:`B = T^\top V`, :math:`\lambda = \text{reg}\cdot\operatorname{tr}(A)/d`; f(t) = tW. Uses only the
  Gram statistics that :class:`simulate.training_set.TrainingSet` keeps up to date, so a whole C_P sweep costs one
  d × d solve per point.
- :class:`CapacitySolver` — limited capacity: :math:`\min_W \lVert TW - V\rVert_F^2` subject to
  :math:`\lVert W\rVert_* \le \tau` (nuclear norm: the convex surrogate of rank). τ = ``budget`` × the nuclear
  norm of the ridge solution on the clean data, fixed at ``prepare``: the model can just about fit the clean
  data at budget 1, and conflicting supervision must share a fixed budget. Solved with cvxpy (SCS) or with
  FISTA (projected accelerated gradient; projection = SVD + projection of the singular values onto the
  ℓ1-ball); tests check the two agree.
- :class:`AttentionSolver` — one softmax cross-attention layer in torch (optional import): L learned queries
  attend over the prompt's two tokens (a learned start token, like CLIP's BOS, and the concept's text embedding);
  values are a linear map to image space; output = mean over queries. Pretrained by Adam on the clean set at
  ``prepare``, then fine-tuned on the poisoned set at each point from that same clean state (the continuous
  training scenario; points are independent, so sweeps resume and parallelise exactly). The mass the queries put
  on the concept token is reported (``concept_attention``): the simulator's analogue of a cross-attention map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from simulate.training_set import TrainingSet
from implosion_base.errors import InputError
from implosion_base.validate import check_scalar

__all__ = ["AttentionSolver", "CapacitySolver", "LinearMap", "RidgeSolver", "SOLVERS", "add_solver_options",
           "make_solver", "project_nuclear_ball", "solver_from_args"]


class Model(Protocol):
    train_loss: float

    def predict(self, text: np.ndarray) -> np.ndarray: ...

    def concept_attention(self, text: np.ndarray) -> np.ndarray | None: ...


class Fitter(Protocol):
    def fit(self, data: TrainingSet) -> Model: ...


@dataclass(frozen=True)
class LinearMap:
    """f(t) = t W, with the training loss (mean squared residual per pair) it achieved."""

    weight: np.ndarray
    train_loss: float

    def predict(self, text: np.ndarray) -> np.ndarray:
        return text @ self.weight

    def concept_attention(self, text: np.ndarray) -> None:
        """A linear map has no attention."""
        return None


def _linear_loss(w: np.ndarray, data: TrainingSet) -> float:
    r""":math:`\frac1n \lVert TW - V\rVert_F^2 = \frac1n(\sum\lVert v\rVert^2 - 2\langle W, B\rangle +
    \langle W, AW\rangle)` from the Gram statistics."""
    value = data.image_sq - 2.0 * float(np.sum(w * data.cross)) + float(np.sum(w * (data.gram @ w)))
    return max(0.0, value) / max(1, data.n)


def _ridge_weight(data: TrainingSet, reg: float) -> np.ndarray:
    d = data.dim
    lam = reg * float(np.trace(data.gram)) / d
    return np.linalg.solve(data.gram + lam * np.eye(d), data.cross)


@dataclass(frozen=True)
class RidgeSolver:
    """Closed-form ridge regression from the Gram statistics (see module docstring)."""

    reg: float = 1e-3
    name: ClassVar[str] = "ridge"

    def __post_init__(self) -> None:
        check_scalar(self.reg, "ridge reg", low=0.0, low_open=True)

    def prepare(self, clean: TrainingSet, seed: int) -> "RidgeSolver":
        return self

    def fit(self, data: TrainingSet) -> LinearMap:
        w = _ridge_weight(data, self.reg)
        return LinearMap(w, _linear_loss(w, data))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


def project_nuclear_ball(w: np.ndarray, tau: float) -> np.ndarray:
    r"""Euclidean projection of W onto :math:`\{\lVert W\rVert_* \le \tau\}`: keep the singular vectors, project
    the singular values onto :math:`\{s \ge 0, \sum s \le \tau\}` (Duchi et al. 2008 simplex projection)."""
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    if s.sum() <= tau:
        return w
    srt = np.sort(s)[::-1]
    cumsum = np.cumsum(srt)
    k = np.arange(1, s.size + 1)
    rho = np.nonzero(srt - (cumsum - tau) / k > 0)[0][-1]
    theta = (cumsum[rho] - tau) / (rho + 1)
    return (u * np.maximum(s - theta, 0.0)) @ vt


@dataclass(frozen=True)
class _CapacityFitter:
    tau: float
    method: str
    tol: float
    max_iter: int

    def fit(self, data: TrainingSet) -> LinearMap:
        n = max(1, data.n)
        a, b = data.gram / n, data.cross / n  # objective (1/n)||TW - V||^2 up to a constant
        w = self._cvxpy(a, b) if self.method == "cvxpy" else self._fista(a, b)
        return LinearMap(w, _linear_loss(w, data))

    def _fista(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Accelerated projected gradient on <W, AW> - 2<B, W> over the nuclear-norm ball."""
        step = 1.0 / (2.0 * max(np.linalg.eigvalsh(a)[-1], 1e-12))
        w = project_nuclear_ball(np.linalg.lstsq(a + 1e-9 * np.eye(a.shape[0]), b, rcond=None)[0], self.tau)
        y, t = w, 1.0
        for _ in range(self.max_iter):
            w_next = project_nuclear_ball(y - step * 2.0 * (a @ y - b), self.tau)
            t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
            y = w_next + ((t - 1.0) / t_next) * (w_next - w)
            change = np.linalg.norm(w_next - w) / max(np.linalg.norm(w), 1e-12)
            w, t = w_next, t_next
            if change < self.tol:
                break
        return w

    def _cvxpy(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import cvxpy as cp

        vals, vecs = np.linalg.eigh(a)
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))  # a = root @ root.T
        w = cp.Variable(a.shape)
        objective = cp.sum_squares(root.T @ w) - 2 * cp.sum(cp.multiply(b, w))
        problem = cp.Problem(cp.Minimize(objective), [cp.normNuc(w) <= self.tau])
        problem.solve(solver="SCS", eps=self.tol)
        if w.value is None or problem.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"cvxpy/SCS did not solve the capacity problem: {problem.status}")
        return np.asarray(w.value)


@dataclass(frozen=True)
class CapacitySolver:
    """Least squares under a nuclear-norm budget (see module docstring)."""

    budget: float = 0.5
    method: Literal["cvxpy", "fista"] = "cvxpy"
    reg: float = 1e-3
    tol: float = 1e-6
    max_iter: int = 5000
    name: ClassVar[str] = "capacity"

    def __post_init__(self) -> None:
        check_scalar(self.budget, "capacity budget", low=0.0, low_open=True)
        check_scalar(self.reg, "ridge reg", low=0.0, low_open=True)
        check_scalar(self.tol, "capacity tol", low=0.0, low_open=True)
        check_scalar(self.max_iter, "capacity max_iter", low=1, integer=True)
        if self.method not in ("cvxpy", "fista"):
            raise InputError(f"capacity method must be 'cvxpy' or 'fista', got {self.method!r}")

    @property
    def label(self) -> str:
        """How the experiments name it: the budget and the method decide what it can fit."""
        return f"{self.name} (budget {self.budget:g}, {self.method})"

    def prepare(self, clean: TrainingSet, seed: int) -> _CapacityFitter:
        tau = self.budget * float(np.linalg.svd(_ridge_weight(clean, self.reg), compute_uv=False).sum())
        return _CapacityFitter(tau, self.method, self.tol, self.max_iter)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class AttentionSolver:
    """One softmax cross-attention layer trained by Adam (see module docstring). Needs torch."""

    n_queries: int = 4
    key_dim: int = 32
    pretrain_steps: int = 400
    steps: int = 150
    lr: float = 5e-3
    batch_size: int = 2048
    name: ClassVar[str] = "attention"

    def __post_init__(self) -> None:
        for field_name in ("n_queries", "key_dim", "pretrain_steps", "steps", "batch_size"):
            check_scalar(getattr(self, field_name), f"attention {field_name}", low=1, integer=True)
        check_scalar(self.lr, "attention lr", low=0.0, low_open=True)

    def prepare(self, clean: TrainingSet, seed: int) -> "_AttentionFitter":
        try:
            import torch
        except ImportError:
            raise InputError("solver 'attention' needs PyTorch: pip install torch==2.13.0") from None
        torch.manual_seed(seed)
        text, _ = clean.arrays()
        layer = _attention_layer(torch, clean.dim, self.n_queries, self.key_dim, text.mean(axis=0))
        fitter = _AttentionFitter(self, layer.state_dict(), seed)
        fitter.clean_state = fitter.train(clean, self.pretrain_steps, layer.state_dict())
        return fitter

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


def _attention_layer(torch: Any, d: int, n_queries: int, key_dim: int, start: np.ndarray) -> Any:
    nn = torch.nn

    class CrossAttention(nn.Module):
        """Queries attend over [start token, prompt embedding]; values map to image space."""

        def __init__(self) -> None:
            super().__init__()
            self.start = nn.Parameter(torch.as_tensor(start, dtype=torch.float32).clone())
            self.queries = nn.Parameter(torch.randn(n_queries, key_dim) / np.sqrt(key_dim))
            self.to_key = nn.Linear(d, key_dim, bias=False)
            self.to_value = nn.Linear(d, d, bias=False)

        def forward(self, text: Any) -> tuple[Any, Any]:
            tokens = torch.stack([self.start.expand_as(text), text], dim=1)  # (B, 2, d)
            keys = self.to_key(tokens)  # (B, 2, h)
            weights = torch.softmax(keys @ self.queries.T / np.sqrt(keys.shape[-1]), dim=1)  # (B, 2, L)
            values = self.to_value(tokens)  # (B, 2, d)
            out = torch.einsum("btl,btd->bd", weights, values) / weights.shape[-1]
            return out, weights[:, 1, :].mean(dim=1)  # output, mass on the concept token

    return CrossAttention()


class _AttentionFitter:
    def __init__(self, solver: AttentionSolver, init_state: dict, seed: int):
        self.solver = solver
        self.seed = seed
        self.clean_state = init_state

    def train(self, data: TrainingSet, steps: int, state: dict) -> dict:
        import torch

        s = self.solver
        layer = _attention_layer(torch, data.dim, s.n_queries, s.key_dim, np.zeros(data.dim))
        layer.load_state_dict(state)
        text, image = (torch.as_tensor(a, dtype=torch.float32) for a in data.arrays())
        opt = torch.optim.Adam(layer.parameters(), lr=s.lr)
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(steps):
            idx = torch.randint(0, text.shape[0], (min(s.batch_size, text.shape[0]),), generator=gen)
            out, _ = layer(text[idx])
            loss = ((out - image[idx]) ** 2).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self._last = (layer, text, image)
        return {k: v.detach().clone() for k, v in layer.state_dict().items()}

    def fit(self, data: TrainingSet) -> "_AttentionModel":
        import torch

        self.train(data, self.solver.steps, self.clean_state)
        layer, text, image = self._last
        with torch.no_grad():
            out, _ = layer(text)
            loss = float(((out - image) ** 2).sum(dim=1).mean())
        return _AttentionModel(layer, loss)


class _AttentionModel:
    def __init__(self, layer: Any, train_loss: float):
        self.layer = layer
        self.train_loss = train_loss

    def _run(self, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            out, mass = self.layer(torch.as_tensor(text, dtype=torch.float32))
        return out.numpy().astype(np.float64), mass.numpy().astype(np.float64)

    def predict(self, text: np.ndarray) -> np.ndarray:
        return self._run(text)[0]

    def concept_attention(self, text: np.ndarray) -> np.ndarray:
        """Per prompt: attention mass (averaged over queries) on the concept token, in [0, 1]."""
        return self._run(text)[1]


SOLVERS = {"ridge": RidgeSolver, "capacity": CapacitySolver, "attention": AttentionSolver}


def add_solver_options(parser: Any) -> None:
    """Every solver's settings as command-line options, generated from its dataclass fields: ``--<solver>-<field>``
    (``--ridge-reg``, ``--capacity-budget``, ``--attention-steps``, ...), typed by the field's default, with the
    choices of a ``Literal`` field. A new solver in :data:`SOLVERS` gets its options with no other change."""
    import typing
    from dataclasses import fields

    for name, cls in SOLVERS.items():
        group = parser.add_argument_group(f"solver {name}")
        try:
            hints = typing.get_type_hints(cls)
        except NameError:  # a solver defined where its annotations cannot be resolved: no Literal choices
            hints = {f.name: None for f in fields(cls)}
        for f in fields(cls):
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else None
            group.add_argument(f"--{name}-{f.name.replace('_', '-')}", dest=f"{name}_{f.name}",
                               type=None if choices else type(f.default), choices=choices, default=f.default,
                               help=f"{name}: {f.name}")


def solver_from_args(name: str, args: Any) -> RidgeSolver | CapacitySolver | AttentionSolver:
    """The solver ``name`` with the settings :func:`add_solver_options` parsed into ``args``."""
    from dataclasses import fields

    if name not in SOLVERS:
        raise InputError(f"unknown solver {name!r}; choose from {', '.join(SOLVERS)}")
    return make_solver(name, **{f.name: getattr(args, f"{name}_{f.name}") for f in fields(SOLVERS[name])})


def make_solver(name: str, **options: Any) -> RidgeSolver | CapacitySolver | AttentionSolver:
    """Solver by name with its options (unknown names → InputError)."""
    if name not in SOLVERS:
        raise InputError(f"unknown solver {name!r}; choose from {', '.join(SOLVERS)}")
    return SOLVERS[name](**options)
