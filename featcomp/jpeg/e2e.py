"""``--method e2e``: the 128 table steps learned by gradient descent through a JPEG proxy and the network.

Why: per-frequency allocations around Annex K (``learned``, ``operational``) stay within noise of the
standard tables; the published savings (J4D, OptS) come from optimising the steps end to end through a
differentiable quantizer. This does that with torch's autograd (optional extra ``featcomp[e2e]``):

- the images' islow DCT coefficients are exact and fixed (``dct.samples`` / ``dct.forward_blocks``: the
  coefficients libjpeg quantizes, chroma already downsampled at 4:2:0), so only the steps carry gradients;
- quantization ``y = c / T`` is rounded straight-through (forward: round; backward: identity), or by
  a soft rounding (``rounding="soft"``: differentiable everywhere, for the finite-difference test);
- decoding is the float counterpart of the exact path: orthonormal 8x8 IDCT, libjpeg's fancy
  triangular chroma upsampling at 4:2:0, JFIF YCbCr -> RGB, clamp to 0..255, then the model's
  normalisation; the model is the ONNX graph evaluated with torch ops (``torch_graph``);
- task loss: KL divergence from the uncompressed model's softmax (soft labels, no image labels);
- rate proxy: bytes per image ~ a * sum log2(1 + |y|) + b * sum (1 - exp(-|y|)) + c over all quantized
  symbols (DC as differences between neighbouring blocks, as JPEG codes it), with a, b, c fitted by least
  squares to real Pillow file bytes of the same images at Annex K qualities 20..95 (``calibrate``);
- loss = KL + lambda x proxy bpp (+ optional penalties on the table shape), lambda raised along a log grid
  with a warm start; after each lambda the steps are rounded to whole baseline steps (1..255) and kept as one rung of a
  ladder (finest to coarsest, each rung at least as coarse as the one before, so the target searches
  stay bisections). Targets and every reported number then use real files, as for the other methods.

The descent's options (``Settings``), each added because the plain one fell short (docs/jpeg.md):

- ``param``: ``"log"`` moves the 128 log steps freely (the original method); ``"annexk"`` writes the
  steps as Annex K x exp(g + theta), one global log scale g and a per-frequency offset theta starting at 0,
  so the descent starts from Annex K's shape and moves along its quality family at no cost;
- ``shape_penalty`` mu x mean(d^2) and ``smooth_penalty`` nu x mean of squared differences of d between
  neighbouring frequencies, d the log steps' deviation from Annex K's shape (its mean removed): they keep
  the tables near a shape known to be good instead of letting noisy gradients make them irregular;
- ``optimizer``: ``"adam"`` (per-coordinate steps of about lr whatever the gradient) or ``"gd"``: a
  normalised gradient step, lr x grad / rms(grad), which keeps the gradient's direction, so coordinates
  with small gradients barely move (lr falls linearly to lr/4 within each lambda, so a rung settles);
- ``batch`` 0: the full batch (all learning photos, in chunks of ``chunk``), a deterministic gradient;
- ``rounding`` ``"anneal"``: a soft quantizer, the softmax-weighted mean of the nearest integers with
  weights exp(-(y - k)^2 / T), T annealed geometrically from ``temperature[0]`` to ``temperature[1]``
  within each lambda (the soft-to-hard annealing of Agustsson et al. 2017): smooth gradients early,
  libjpeg's rounding at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featcomp.errors import FeatcompError
from featcomp.jpeg import dct
from featcomp.jpeg.encode import encode
from featcomp.jpeg.measure import Classifier
from featcomp.jpeg.tables import STANDARD_CHROMA, STANDARD_LUMA, Tables, standard

if TYPE_CHECKING:
    import torch

__all__ = ["INSTALL", "OPTIMIZERS", "PARAMS", "ROUNDINGS", "Proxy", "RateModel", "Settings", "Steps", "calibrate",
           "e2e_ladder", "import_torch", "log_steps", "soft_round"]

INSTALL = "pip install 'featcomp[e2e]' (torch 2.13.0, CPU build)"
PARAMS = ("log", "annexk")
OPTIMIZERS = ("adam", "gd")
ROUNDINGS = ("ste", "soft", "anneal", "none")
Progress = Callable[[Iterable[Any]], Iterable[Any]]


def import_torch() -> Any:
    """torch, or one line saying how to get it."""
    try:
        import torch
    except ImportError:
        raise FeatcompError(f"--method e2e needs torch: {INSTALL}") from None
    return torch


@dataclass(frozen=True)
class Settings:
    """The descent: lambdas (task-loss nats per proxy bpp) from fine to coarse, steps per lambda, batch (0: all
    photos), and the options described in the module docstring."""

    lambdas: tuple[float, ...] = (0.003, 0.01, 0.02, 0.04, 0.08, 0.16, 0.3)
    steps: int = 20
    batch: int = 8
    lr: float = 0.02
    start_quality: int = 95
    rounding: str = "ste"
    seed: int = 0
    param: str = "log"
    optimizer: str = "adam"
    shape_penalty: float = 0.0
    smooth_penalty: float = 0.0
    temperature: tuple[float, float] = (0.3, 0.01)
    chunk: int = 8

    def check(self) -> None:
        """One line naming the setting that is out of range."""
        for name, value, allowed in (("param", self.param, PARAMS), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("rounding", self.rounding, ROUNDINGS)):
            if value not in allowed:
                raise FeatcompError(f"e2e {name} {value!r}: choose one of {', '.join(allowed)}")
        if not self.lambdas or min(self.lambdas) < 0 or self.steps < 1 or self.batch < 0 or self.chunk < 1:
            raise FeatcompError("e2e settings: lambdas >= 0 (at least one), steps >= 1, batch >= 0, chunk >= 1")
        if min(self.lr, *self.temperature) <= 0 or min(self.shape_penalty, self.smooth_penalty) < 0:
            raise FeatcompError("e2e settings: lr and temperatures > 0, penalties >= 0")

    @classmethod
    def parse(cls, spec: str) -> Settings:
        """``--e2e`` spec, e.g. ``param=annexk,optimizer=gd,batch=0,lambdas=0.003/0.01/0.04``; other keys keep defaults."""
        defaults = cls()
        kwargs: dict[str, Any] = {}
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            key, sep, value = (x.strip() for x in part.partition("="))
            key = key.replace("-", "_")
            if not sep or not value or key not in defaults.as_dict() or key in kwargs:
                raise FeatcompError(f"--e2e {part!r}: expected KEY=VALUE once each, KEY one of "
                                    f"{', '.join(defaults.as_dict())}")
            current = getattr(defaults, key)
            try:
                if isinstance(current, tuple):
                    kwargs[key] = tuple(float(x) for x in value.split("/"))
                else:
                    kwargs[key] = type(current)(value)
            except ValueError:
                raise FeatcompError(f"--e2e {part!r}: {value!r} is not a {type(current).__name__}") from None
        if len(kwargs.get("temperature", (0.0, 0.0))) != 2:
            raise FeatcompError("--e2e temperature: two values, start/end")
        settings = cls(**kwargs)
        settings.check()
        return settings

    def as_dict(self) -> dict[str, Any]:
        return {"lambdas": list(self.lambdas), "steps": self.steps, "batch": self.batch, "lr": self.lr,
                "start_quality": self.start_quality, "rounding": self.rounding, "param": self.param,
                "optimizer": self.optimizer, "shape_penalty": self.shape_penalty,
                "smooth_penalty": self.smooth_penalty, "temperature": list(self.temperature), "seed": self.seed,
                "chunk": self.chunk}


def soft_round(torch: Any, y: Any, temperature: float) -> Any:
    """Soft-to-hard quantizer: sum_k k softmax_k(-(y - k)^2 / T) over the four integers nearest y.

    Smooth in y; as T -> 0 it becomes round(y) (the two nearest integers' weights go to 1 and 0 as
    exp(-|2r - 1| / T), r = y - floor(y)); the two further integers keep it continuous across integers."""
    f = torch.floor(y).detach()
    k = f.unsqueeze(-1) + torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=y.dtype)
    w = torch.softmax(-((y.unsqueeze(-1) - k) ** 2) / temperature, dim=-1)
    return (w * k).sum(dim=-1)


class Steps:
    """The descent's parameters and the log steps [2, 8, 8] they give (``Settings.param``)."""

    def __init__(self, torch: Any, s: Settings, subsampling: str, dtype: Any) -> None:
        self.torch = torch
        self.base = torch.tensor(np.log(np.stack([STANDARD_LUMA, STANDARD_CHROMA]).astype(np.float64)), dtype=dtype)
        start = log_steps(standard(s.start_quality, subsampling), dtype)
        if s.param == "log":
            self.theta = start.clone().requires_grad_(True)
            self.params = [self.theta]
        else:  # Annex K x exp(g + theta): g starts at the start quality's scale, theta at Annex K's shape
            self.scale = (start - self.base).mean().detach().clone().requires_grad_(True)
            self.theta = torch.zeros((2, 8, 8), dtype=dtype).requires_grad_(True)
            self.params = [self.scale, self.theta]
        self.annexk = s.param == "annexk"

    def raw(self) -> Any:
        """Unclamped log steps."""
        return self.base + self.scale + self.theta if self.annexk else self.theta

    def log_steps(self) -> Any:
        """Log steps clamped to baseline JPEG's 1..255."""
        return self.torch.clamp(self.raw(), 0.0, math.log(255.0))

    def penalty(self, s: Settings) -> Any:
        """mu x mean(d^2) + nu x mean((d_i - d_j)^2 over neighbouring frequencies), d = deviation from Annex K's shape."""
        d = self.raw() - self.base
        d = d - d.mean()
        smooth = ((d[:, 1:, :] - d[:, :-1, :]) ** 2).sum() + ((d[:, :, 1:] - d[:, :, :-1]) ** 2).sum()
        return s.shape_penalty * (d ** 2).mean() + s.smooth_penalty * smooth / (2 * 2 * 8 * 7)

    def clamp_(self) -> None:
        """Keep the free log steps inside 1..255 (the Annex K form clamps in ``log_steps``)."""
        if not self.annexk:
            with self.torch.no_grad():
                self.theta.clamp_(0.0, math.log(255.0))

    def whole(self) -> np.ndarray:
        return np.asarray(np.clip(np.round(np.exp(self.log_steps().detach().double().numpy())), 1, 255).astype(np.int64))


@dataclass(frozen=True)
class RateModel:
    """bytes per image ~ a * sum log2(1+|y|) + b * sum (1 - exp(-|y|)) + c; fitted to real Pillow bytes."""

    a: float
    b: float
    c: float
    rel_error: float  # mean |proxy - real| / real on the calibration files

    def as_dict(self) -> dict[str, float]:
        return {"a": round(self.a, 6), "b": round(self.b, 6), "c": round(self.c, 3), "rel_error": round(self.rel_error, 4)}


def _ortho(torch: Any, dtype: Any) -> Any:
    return torch.tensor(dct.DCT_ORTHO, dtype=dtype)


class Proxy:
    """The differentiable JPEG round trip of fixed images: log steps [2, 8, 8] in, model tensors out."""

    def __init__(self, views: Sequence[np.ndarray], classifier: Classifier | None, subsampling: str,
                 dtype: Any = None, preprocess: Any = None) -> None:
        torch = import_torch()
        self.torch = torch
        self.dtype = dtype or torch.float32
        self.subsampling = dct.check_subsampling(subsampling)
        self.h, self.w = views[0].shape[:2]
        pre = preprocess if preprocess is not None else classifier.preprocess if classifier is not None else None
        self.order = [2, 1, 0] if pre is not None and pre.order == "bgr" else [0, 1, 2]
        self.mean = torch.tensor(np.asarray(pre.mean if pre is not None else 0.0, np.float64), dtype=self.dtype)
        self.std = torch.tensor(np.asarray(pre.std if pre is not None else 1.0, np.float64), dtype=self.dtype)
        self.layout = pre.layout if pre is not None else "nchw"
        planes = [dct.samples(v, subsampling) for v in views]
        # islow coefficients / 8 = about the orthonormal DCT: y = coef / step is what libjpeg rounds
        self.luma = torch.tensor(np.stack([dct.forward_blocks(p[0]) for p in planes]) / 8.0, dtype=self.dtype)
        self.chroma = torch.tensor(np.stack([np.stack([dct.forward_blocks(c) for c in p[1:]]) for p in planes]) / 8.0,
                                   dtype=self.dtype)
        self.basis = _ortho(torch, self.dtype)
        self.temperature = 0.1  # of the "anneal" rounding; the descent sets it at every step

    def __len__(self) -> int:
        return int(self.luma.shape[0])

    def _round(self, y: torch.Tensor, rounding: str) -> torch.Tensor:
        torch = self.torch
        if rounding == "anneal":
            return soft_round(torch, y, self.temperature)
        if rounding == "ste":
            return y + (torch.round(y) - y).detach()
        if rounding == "soft":  # Agustsson & Theis' soft rounding, alpha 4: continuous, smooth between integers
            alpha = 4.0
            f = torch.floor(y).detach()
            r = y - f - 0.5
            return f + 0.5 + torch.tanh(alpha * r) / (2 * math.tanh(alpha / 2))
        if rounding == "none":
            return y
        raise FeatcompError(f"unknown rounding {rounding!r}")

    def _decode_plane(self, coef: torch.Tensor, steps: torch.Tensor, rounding: str) -> torch.Tensor:
        """Coefficients [..., bh, bw, 8, 8] -> float samples [..., bh*8, bw*8] (0..255, not clamped)."""
        deq = self._round(coef / steps, rounding) * steps
        pix = self.basis.T @ deq @ self.basis + 128.0
        *lead, bh, bw, _, _ = pix.shape
        return pix.transpose(-3, -2).reshape(*lead, bh * 8, bw * 8)

    def upsample(self, plane: torch.Tensor) -> torch.Tensor:
        """libjpeg's fancy upsampling in floats: [n, 2, >=hd, >=wd] -> [n, 2, h, w]."""
        torch = self.torch
        hd, wd = dct.chroma_size(self.h, self.w)
        x = torch.nn.functional.pad(plane[..., :hd, :wd], (1, 1, 1, 1), mode="replicate")
        rows = []
        for far in (x[..., :-2, :], x[..., 2:, :]):
            sums = 3 * x[..., 1:-1, :] + far
            centre = 3 * sums[..., 1:-1]
            left, right = (centre + sums[..., :-2]) / 16, (centre + sums[..., 2:]) / 16
            rows.append(torch.stack([left, right], dim=-1).reshape(*left.shape[:-1], 2 * wd))
        out = torch.stack(rows, dim=-2).reshape(*rows[0].shape[:-2], 2 * hd, 2 * wd)
        return out[..., :self.h, :self.w]

    def rgb(self, log_steps: torch.Tensor, idx: Sequence[int] | None = None, rounding: str = "ste") -> torch.Tensor:
        """Decoded float RGB [n, H, W, 3], clamped to 0..255."""
        torch = self.torch
        index = slice(None) if idx is None else list(idx)
        steps = torch.exp(log_steps)
        y = self._decode_plane(self.luma[index], steps[0], rounding)[:, :self.h, :self.w]
        c = self._decode_plane(self.chroma[index], steps[1], rounding)
        c = self.upsample(c) if self.subsampling == "4:2:0" else c[..., :self.h, :self.w]
        cb, cr = c[:, 0] - 128.0, c[:, 1] - 128.0
        rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=-1)
        return torch.clamp(rgb, 0.0, 255.0)

    def inputs(self, log_steps: torch.Tensor, idx: Sequence[int] | None = None, rounding: str = "ste") -> torch.Tensor:
        """The model's input tensors for the decoded images (its --preprocess normalisation and layout)."""
        x = (self.rgb(log_steps, idx, rounding)[..., self.order] - self.mean) / self.std
        return x.permute(0, 3, 1, 2) if self.layout == "nchw" else x

    def rate_features(self, log_steps: torch.Tensor, idx: Sequence[int] | None = None) -> torch.Tensor:
        """Per image [n, 2]: sum log2(1 + |y|) and sum (1 - exp(-|y|)) over the symbols JPEG codes."""
        torch = self.torch
        index = slice(None) if idx is None else list(idx)
        steps = torch.exp(log_steps)
        feats = []
        for coef, t in ((self.luma[index], steps[0]), (self.chroma[index], steps[1])):
            y = coef / t
            n = y.shape[0]
            flat = y.reshape(n, -1, 8, 8) if coef.dim() == 5 else y.reshape(n, 2, -1, 8, 8)
            dc = flat[..., 0, 0]
            dc_diff = torch.cat([dc[..., :1], dc[..., 1:] - dc[..., :-1]], dim=-1)
            ac = flat.reshape(*flat.shape[:-2], 64)[..., 1:]
            mags = [dc_diff.abs().reshape(n, -1), ac.abs().reshape(n, -1)]
            feats.append(torch.stack([sum(torch.log2(1 + m).sum(dim=1) for m in mags),
                                      sum((1 - torch.exp(-m)).sum(dim=1) for m in mags)], dim=1))
        return feats[0] + feats[1]

    def bytes(self, log_steps: torch.Tensor, model: RateModel, idx: Sequence[int] | None = None) -> torch.Tensor:
        f = self.rate_features(log_steps, idx)
        return model.a * f[:, 0] + model.b * f[:, 1] + model.c


def log_steps(tables: Tables, dtype: Any = None) -> Any:
    """log of the steps [2, 8, 8] (luma, chroma) as a torch tensor: what the descent moves."""
    torch = import_torch()
    return torch.tensor(np.log(np.stack([tables.luma, tables.chroma]).astype(np.float64)), dtype=dtype)


def calibrate(proxy: Proxy, views: Sequence[np.ndarray], qualities: Sequence[int] = (20, 35, 50, 65, 80, 90, 95),
              limit: int = 16) -> RateModel:
    """Least-squares fit of the rate proxy to real Pillow file bytes (the tables' subsampling, optimize=True)."""
    torch = proxy.torch
    idx = list(range(min(limit, len(views))))
    rows: list[np.ndarray] = []
    real: list[int] = []
    with torch.no_grad():
        for q in qualities:
            t = standard(q, proxy.subsampling)
            f = proxy.rate_features(log_steps(t, proxy.dtype), idx).double().numpy()
            rows.append(f)
            real.extend(len(encode(views[i], t)) for i in idx)
    x = np.concatenate(rows)
    a = np.column_stack([x, np.ones(len(x))])
    y = np.asarray(real, np.float64)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    if coef[0] < 0 or coef[1] < 0:  # keep the proxy increasing in |y|: refit the positive part alone
        keep = 0 if coef[0] >= coef[1] else 1
        sub, *_ = np.linalg.lstsq(a[:, [keep, 2]], y, rcond=None)
        coef = np.zeros(3)
        coef[keep], coef[2] = max(sub[0], 0.0), sub[1]
    pred = a @ coef
    return RateModel(float(coef[0]), float(coef[1]), float(coef[2]), float(np.mean(np.abs(pred - y) / y)))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _anneal(s: Settings, k: int) -> float:
    """Temperature at step k of a lambda: geometric from temperature[0] to temperature[1]."""
    t0, t1 = s.temperature
    return t0 * (t1 / t0) ** (k / max(s.steps - 1, 1))


def e2e_ladder(classifier: Classifier, views: Sequence[np.ndarray], subsampling: str = "4:4:4",
               settings: Settings | None = None, progress: Progress | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The ladder [L, 2, 8, 8] of whole steps from finest to coarsest, and what the descent measured."""
    from featcomp.jpeg.torch_graph import TorchGraph

    torch = import_torch()
    s = settings or Settings()
    s.check()
    torch.manual_seed(s.seed)
    proxy = Proxy(views, classifier, subsampling)
    rate_model = calibrate(proxy, views)
    graph = TorchGraph(classifier.model, classifier.logit)
    _, clean_logits = classifier.run(classifier.inputs(views))
    target = torch.tensor(_softmax(clean_logits), dtype=proxy.dtype)
    pixels = proxy.h * proxy.w
    steps_ = Steps(torch, s, subsampling, proxy.dtype)
    opt = torch.optim.Adam(steps_.params, lr=s.lr) if s.optimizer == "adam" else None
    rng = np.random.default_rng(s.seed)
    full = s.batch == 0 or s.batch >= len(proxy)
    rungs: list[np.ndarray] = []
    trace = []
    schedule = [(lam, k) for lam in s.lambdas for k in range(s.steps)]
    for lam, k in (progress(schedule) if progress is not None else schedule):
        proxy.temperature = _anneal(s, k)
        batch = list(range(len(proxy))) if full else rng.choice(len(proxy), size=s.batch, replace=False).tolist()
        for p in steps_.params:
            p.grad = None
        kl_sum = bpp_sum = 0.0
        size = s.chunk if full else len(batch)
        for start in range(0, len(batch), size):  # the full batch in chunks that add up to one mean gradient
            idx = batch[start:start + size]
            theta = steps_.log_steps()
            logits = graph(proxy.inputs(theta, idx, s.rounding)).reshape(len(idx), -1)
            p_ = target[idx]
            kl = (p_ * (torch.log(p_.clamp_min(1e-12)) - torch.log_softmax(logits, dim=1))).sum(dim=1).sum()
            bpp = 8.0 * proxy.bytes(theta, rate_model, idx).sum() / pixels
            ((kl + lam * bpp) / len(batch)).backward()
            kl_sum, bpp_sum = kl_sum + kl.item(), bpp_sum + bpp.item()
        steps_.penalty(s).backward()
        if opt is not None:
            opt.step()
        else:  # normalised gradient step: the gradient's direction, rms length lr, down to lr/4 within a lambda
            lr = s.lr * (1 - 0.75 * k / max(s.steps - 1, 1))
            with torch.no_grad():
                grads = [p.grad for p in steps_.params if p.grad is not None]
                rms = torch.sqrt(sum((g ** 2).sum() for g in grads) / sum(g.numel() for g in grads))
                for p in steps_.params:
                    if p.grad is not None and rms > 0:
                        p -= lr * p.grad / rms
        steps_.clamp_()
        if k == s.steps - 1:
            whole = steps_.whole()
            if rungs:
                whole = np.maximum(whole, rungs[-1])
            if not rungs or not np.array_equal(whole, rungs[-1]):
                rungs.append(whole)
            trace.append({"lambda": lam, "kl": round(kl_sum / len(batch), 5), "proxy_bpp": round(bpp_sum / len(batch), 4)})
    if rungs[-1].min() < 255:  # the coarsest JPEG there is ends every ladder, as for `learned`
        rungs.append(np.full((2, 8, 8), 255, np.int64))
    info = {"rate_model": rate_model.as_dict(), "settings": s.as_dict(), "trace": trace}
    return np.stack(rungs), info
