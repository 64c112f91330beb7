"""The judge: the harness's measuring instrument, which reads every generated image.

A small CLIP-style joint embedder trained contrastively on *clean* data only: image CNN f(x) and a projection g of
the frozen sentence embedding (:mod:`empirical.text_encoder`), both L2-normalised into a joint space, trained with
the supervised-contrastive CLIP loss

    L = ½·CE(softmax_j(<f(x_i), g(t_j)>/τ), P_i) + ½·CE(softmax_i(<f(x_i), g(t_j)>/τ), P_j),

where P_i is uniform over the batch items of the same concept (captions of one concept are positives of each
other, so repeated concepts are not pushed apart). It is used for (a) zero-shot classification of generated images
over all concept names (text embedding = mean over the caption templates), (b) the prompt-image score
<f(x), g(t)>, and (c) the text/image embeddings whose Alignment Difficulty (theory.ad) is the AD of a training mix.
A local transformers CLIP folder can replace it (:class:`ClipJudge`, ``--judge``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from empirical.seeding import seeded
from implosion_base.errors import DAMAGE, UNLOADABLE, InputError, first_line
from implosion_base.files import atomic_path, atomic_write_text, discard_damaged
from implosion_base.progress import Progress, as_progress
from implosion_base.validate import unit_rows


from empirical.data import to_tensor
from empirical.text_encoder import TextEncoder


@dataclass(frozen=True)
class JudgeConfig:
    """Judge architecture and training. ``width`` channels in the first conv stage (doubling twice), ``dim`` of the
    joint space, ``steps`` Adam steps at ``lr`` with batch ``batch_size``; ``temperature`` is learned from its
    initial value; images are augmented by random down-up sampling (blur) and Gaussian noise of std ≤ ``noise``
    so that the judge reads imperfect generated images."""

    width: int = 24
    dim: int = 128
    steps: int = 400
    batch_size: int = 256
    lr: float = 2e-3
    temperature: float = 0.07
    noise: float = 0.1
    seed: int = 0

    def key(self, data_key: str, text_encoder: str) -> str:
        blob = json.dumps({**asdict(self), "data": data_key, "text": text_encoder, "version": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build_judge_modules(cfg: JudgeConfig, text_dim: int):
    import torch.nn as nn

    w = cfg.width

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU()]

    image = nn.Sequential(*block(3, w, 1), *block(w, 2 * w, 2), *block(2 * w, 2 * w, 1),
                          *block(2 * w, 4 * w, 2), *block(4 * w, 4 * w, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    image_proj = nn.Linear(4 * w, cfg.dim)
    text_proj = nn.Sequential(nn.Linear(text_dim, 2 * cfg.dim), nn.SiLU(), nn.Linear(2 * cfg.dim, cfg.dim))
    return nn.ModuleDict({"image": image, "image_proj": image_proj, "text_proj": text_proj})


class ZeroShot:
    """Zero-shot reading shared by every judge: given unit ``embed_images`` / ``embed_texts`` in one joint space,
    a ``names`` list and a softmax ``temperature()`` τ, concept probabilities are softmax(⟨f(x), c_k⟩ / τ) over
    class embeddings c_k = the normalised mean of the concept's caption-template embeddings."""

    names: list[str]
    _class_emb: np.ndarray | None = None

    def temperature(self) -> float:  # pragma: no cover - every judge overrides it
        raise NotImplementedError

    def class_embeddings(self) -> np.ndarray:
        """One unit vector per concept name: the normalised mean of its caption-template embeddings."""
        if self._class_emb is None:
            from empirical.data import CAPTION_TEMPLATES, caption

            k = len(CAPTION_TEMPLATES)
            e = self.embed_texts([caption(n, j) for n in self.names for j in range(k)])
            e = e.reshape(len(self.names), k, -1).mean(1)
            self._class_emb = unit_rows(e)
        return self._class_emb

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Zero-shot class probabilities (N, n_concepts): softmax of <f(x), class embedding>/τ."""
        logits = self.embed_images(images) @ self.class_embeddings().T / self.temperature()
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Zero-shot predicted concept index per image."""
        return self.probabilities(images).argmax(1)

    def score(self, images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Prompt-image score: cosine <f(x_i), g(t_i)> per pair."""
        return np.sum(self.embed_images(images) * self.embed_texts(texts), axis=1)


class Judge(ZeroShot):
    """The trained joint embedder. Use :meth:`image_features` (for Fréchet distances), :meth:`embed_images`,
    :meth:`embed_texts` (unit vectors in the joint space), :meth:`classify` (zero-shot over ``names``)."""

    def __init__(self, modules, log_temp, names: list[str], text_encoder: TextEncoder, cfg: JudgeConfig):
        import torch

        self.modules = modules.eval()
        self.log_temp = log_temp
        self.names = list(names)
        self.text = text_encoder
        self.cfg = cfg
        self._torch = torch
        self._class_emb = None
        self.device = next(modules.parameters()).device

    # -- embeddings ---------------------------------------------------------------------------------------
    def image_features(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Penultimate CNN features (N, 4·width): the space of the Fréchet distance."""
        torch = self._torch
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = to_tensor(images[i:i + batch_size]).to(self.device)
                out.append(self.modules["image"](x).float().cpu())
        return torch.cat(out).numpy().astype(np.float64)

    def embed_images(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Unit image embeddings f(x) (N, dim)."""
        torch = self._torch
        feats = torch.from_numpy(self.image_features(images, batch_size=batch_size)).float().to(self.device)
        with torch.no_grad():
            e = torch.nn.functional.normalize(self.modules["image_proj"](feats), dim=-1)
        return e.cpu().numpy().astype(np.float64)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit text embeddings g(t) (N, dim), computed once per distinct text."""
        torch = self._torch
        uniq = sorted(set(texts))
        with torch.no_grad():
            s = self.text.sentence_embeddings(uniq).to(self.device)
            e = torch.nn.functional.normalize(self.modules["text_proj"](s), dim=-1).cpu().numpy().astype(np.float64)
        row = {t: i for i, t in enumerate(uniq)}
        return e[[row[t] for t in texts]]

    def temperature(self) -> float:
        return float(np.exp(self.log_temp))

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``judge.safetensors`` and ``judge.json`` (config, names, temperature) into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "judge.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.modules.state_dict().items()}, str(tmp))
        meta = {"config": asdict(self.cfg), "names": self.names, "log_temp": float(self.log_temp),
                "text_dim": self.text.dim, "image_size": getattr(self, "image_size", None)}
        atomic_write_text(folder / "judge.json", json.dumps(meta, indent=1))

    @staticmethod
    def read_meta(folder: Path) -> tuple[dict, "JudgeConfig"]:
        """``folder/judge.json`` read and checked (an object with its config, concept names, temperature and text
        width): (the record, its :class:`JudgeConfig`); InputError naming the folder and the problem otherwise —
        before any model is built."""
        try:
            meta = json.loads((Path(folder) / "judge.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
                raise ValueError("judge.json is not an object with a 'config' object")
            names = meta["names"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("'names' is not a list of concept names")
            float(meta["log_temp"]), int(meta["text_dim"])
            return meta, JudgeConfig(**meta["config"])
        except UNLOADABLE as exc:
            raise _unreadable_judge(folder, exc) from None

    @classmethod
    def load(cls, folder: Path, text_encoder: TextEncoder, *, device: str = "cpu") -> "Judge":
        """Load a judge written by :meth:`save` (safetensors; no pickle)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "judge.json").is_file() or not (folder / "judge.safetensors").is_file():
            raise InputError(f"{folder} does not hold a judge (judge.json + judge.safetensors)")
        meta, cfg = cls.read_meta(folder)
        names = meta["names"]
        try:
            modules = _build_judge_modules(cfg, int(meta["text_dim"]))
            modules.load_state_dict(load_file(str(folder / "judge.safetensors")))
            log_temp = float(meta["log_temp"])
        except UNLOADABLE as exc:  # truncated weights, or weights of another judge
            raise _unreadable_judge(folder, exc) from None
        modules.to(device)
        judge = cls(modules, log_temp, names, text_encoder, cfg)
        judge.image_size = meta.get("image_size")
        return judge


def _unreadable_judge(folder: Path, exc: BaseException) -> InputError:
    """The one-line error of a judge folder that cannot be read, naming the folder and why."""
    return InputError(f"{folder} holds no readable judge ({type(exc).__name__}: {first_line(exc)[:200]})")


def load_clip(folder: Path, *, device: str = "cpu"):
    """(CLIPModel, CLIPProcessor) from a local transformers CLIP folder: ``config.json`` with model_type clip,
    safetensors weights (a .bin alone is refused, named), no remote code; :class:`InputError` otherwise."""
    from transformers import CLIPModel, CLIPProcessor

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder (a local CLIP model folder is expected)")
    cfg = folder / "config.json"
    try:
        config = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else None
        model_type = config.get("model_type") if isinstance(config, dict) else None
    except (OSError, ValueError, RecursionError):
        model_type = None
    if model_type != "clip":
        raise InputError(f"{folder} is not a CLIP model folder (config.json with model_type 'clip')")
    if not list(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        hint = f" (found {pickles[0]}; convert it to safetensors)" if pickles else ""
        raise InputError(f"{folder} has no safetensors weights{hint}")
    try:
        model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(device)
        processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
    except UNLOADABLE as exc:  # truncated weights, impossible config values
        raise InputError(f"cannot load CLIP from {folder}: {type(exc).__name__}: {first_line(exc)[:200]}") from None
    return model.eval().requires_grad_(False), processor


def _features(x):
    """Features from a transformers output (a tensor, or an output object in newer versions)."""
    return x if hasattr(x, "shape") else getattr(x, "pooler_output", x[0])


class ClipJudge(ZeroShot):
    """A local CLIP model as the judge (``--judge DIR``): the embeddings are CLIP's (unit image and text
    features), τ = 1 / CLIP's learned logit scale, and the Fréchet features are its image features."""

    def __init__(self, folder: Path, names: Sequence[str], *, device: str = "cpu"):
        import torch

        self.model, self.processor = load_clip(folder, device=device)
        self.names = list(names)
        self.device = device
        self.folder = Path(folder).resolve()
        self._class_emb = None
        self._torch = torch

    def temperature(self) -> float:
        return float(1.0 / self.model.logit_scale.exp())

    def embed_images(self, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Unit CLIP image features (N, projection_dim); the processor resizes and normalises."""
        torch = self._torch
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                px = self.processor(images=list(images[i:i + batch_size]), return_tensors="pt")["pixel_values"]
                v = _features(self.model.get_image_features(pixel_values=px.to(self.device)))
                out.append(torch.nn.functional.normalize(v.float(), dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.float64)

    image_features = embed_images

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit CLIP text features (N, projection_dim), computed once per distinct text."""
        torch = self._torch
        uniq = sorted(set(texts))
        out = []
        with torch.no_grad():
            for i in range(0, len(uniq), 256):
                tok = self.processor.tokenizer(uniq[i:i + 256], padding=True, truncation=True, return_tensors="pt")
                t = _features(self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                           attention_mask=tok["attention_mask"].to(self.device)))
                out.append(torch.nn.functional.normalize(t.float(), dim=-1).cpu())
        e = torch.cat(out).numpy().astype(np.float64)
        row = {t: i for i, t in enumerate(uniq)}
        return e[[row[t] for t in texts]]


def _degrade(x, noise: float, gen):
    """Random blur by down-up sampling (half the batch) plus Gaussian noise of random std in [0, noise]."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    blur = torch.rand(n, generator=gen) < 0.5
    if blur.any():
        small = F.interpolate(x[blur], size=(h // 2, w // 2), mode="bilinear", align_corners=False)
        x = x.clone()
        x[blur] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    std = torch.rand(n, 1, 1, 1, generator=gen) * noise
    return x + std * torch.randn(x.shape, generator=gen)


def train_judge(images: np.ndarray, captions: Sequence[str], groups: np.ndarray, names: Sequence[str],
                text_encoder: TextEncoder, cfg: JudgeConfig = JudgeConfig(), *, progress: Progress | bool = False,
                device: str = "cpu") -> Judge:
    """Train the judge on clean (image, caption) pairs; ``groups[i]`` is the concept of pair i (positives share it).

    Deterministic for a given ``cfg.seed`` on a given machine (torch CPU kernels).
    """
    import torch

    from empirical.schedule import warmup_cosine

    gen = torch.Generator().manual_seed(cfg.seed)
    with seeded(cfg.seed):
        modules = _build_judge_modules(cfg, text_encoder.dim).to(device)
    log_temp = torch.nn.Parameter(torch.tensor(float(np.log(cfg.temperature)), device=device))
    uniq = sorted(set(captions))
    row = {t: i for i, t in enumerate(uniq)}
    sent = text_encoder.sentence_embeddings(uniq).to(device)
    cap_idx = torch.tensor([row[c] for c in captions])
    x_all = to_tensor(images)
    g_all = torch.as_tensor(np.asarray(groups))
    opt = torch.optim.AdamW(list(modules.parameters()) + [log_temp], lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps))
    n = len(captions)
    steps = as_progress(progress).bar(range(cfg.steps), desc="judge")
    modules.train()
    for step in steps:
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        x = _degrade(x_all[idx], cfg.noise, gen).to(device)
        fi = torch.nn.functional.normalize(modules["image_proj"](modules["image"](x)), dim=-1)
        ft = torch.nn.functional.normalize(modules["text_proj"](sent[cap_idx[idx].to(device)]), dim=-1)
        logits = fi @ ft.T / log_temp.exp().clamp_min(1e-3)
        same = (g_all[idx][:, None] == g_all[idx][None, :]).float().to(device)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.log_softmax(0), 0).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0:
            steps.set_postfix(loss=f"{float(loss.detach()):.4f}")
    modules.eval()
    judge = Judge(modules, float(log_temp.detach()), list(names), text_encoder, cfg)
    judge.image_size = int(images.shape[1])
    return judge


def load_or_train_judge(images: np.ndarray, captions: Sequence[str], groups: np.ndarray, names: Sequence[str],
                        text_encoder: TextEncoder, cfg: JudgeConfig, *, cache_dir: Path | None, data_key: str,
                        progress: Progress | bool = False, device: str = "cpu") -> Judge:
    """:func:`train_judge`, cached under ``cache_dir/judge-<key>/`` (key: data, text encoder and judge config)."""
    if cache_dir is not None:
        folder = Path(cache_dir) / f"judge-{cfg.key(data_key, str(text_encoder.path))}"
        if (folder / "judge.safetensors").is_file():
            try:
                return Judge.load(folder, text_encoder, device=device)
            except (*DAMAGE, InputError) as exc:
                discard_damaged(folder, exc)
    judge = train_judge(images, captions, groups, names, text_encoder, cfg, progress=progress, device=device)
    if cache_dir is not None:
        judge.save(folder)
    return judge
