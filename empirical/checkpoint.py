"""Resumable training checkpoints: the UNet, its EMA weights, the AdamW moments and the batch sampler's RNG state
in one safetensors file (no pickle), its step and run fingerprint in the file's own metadata, so a kill at any
instant leaves either the old checkpoint or the new one (:mod:`empirical.train` writes and resumes them)."""

from __future__ import annotations

import json
from pathlib import Path

from implosion_base.files import atomic_path, atomic_write_text


def _state_tensors(unet, ema: dict, opt, gen) -> dict:
    import torch

    out = {f"unet.{k}": v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
    out.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.items()})
    names = {id(p): n for n, p in unet.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            for key, val in st.items():
                t = val if torch.is_tensor(val) else torch.tensor(float(val))
                out[f"opt.{names[id(p)]}.{key}"] = t.detach().cpu().contiguous()
    out["rng"] = gen.get_state().clone()
    return out


def save_checkpoint(folder: Path, step: int, fingerprint: str, unet, ema: dict, opt, gen) -> None:
    """Write ``folder/checkpoint.safetensors`` with one rename; its step and run fingerprint travel inside its
    metadata, so a kill at any instant leaves either the old checkpoint or the new one, never tensors of one step
    labelled with another. ``checkpoint.json`` repeats them for people (and for checkpoints written before)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "checkpoint.safetensors") as tmp:
        save_file(_state_tensors(unet, ema, opt, gen), str(tmp), metadata={"step": str(step),
                                                                           "fingerprint": fingerprint})
    atomic_write_text(folder / "checkpoint.json", json.dumps({"step": step, "fingerprint": fingerprint}))


def checkpoint_meta(path: Path) -> dict | None:
    """Step and fingerprint from a checkpoint's safetensors metadata (None when it has none, or is unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception:  # noqa: BLE001 - a damaged file is no checkpoint; training starts over
        return None
    if "step" not in meta or "fingerprint" not in meta:
        return None
    return {"step": int(meta["step"]), "fingerprint": meta["fingerprint"]}


def load_checkpoint(folder: Path, fingerprint: str, unet, ema: dict, opt, gen, *, max_step: int | None = None) -> int:
    """Restore a checkpoint written for the same run fingerprint at a step ≤ ``max_step``; returns its step
    (0, restoring nothing, if there is none)."""
    import torch
    from safetensors.torch import load_file

    meta_path, path = folder / "checkpoint.json", folder / "checkpoint.safetensors"
    if not path.is_file():
        return 0
    meta = checkpoint_meta(path)
    if meta is None:  # written before the metadata carried the step
        if not meta_path.is_file():
            return 0
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("fingerprint") != fingerprint or (max_step is not None and int(meta["step"]) > max_step):
        return 0
    st = load_file(str(path))
    unet.load_state_dict({k[5:]: v for k, v in st.items() if k.startswith("unet.")})
    for k in ema:
        ema[k].copy_(st[f"ema.{k}"])
    params = dict(unet.named_parameters())
    for key, val in st.items():
        if key.startswith("opt."):
            name, _, field = key[4:].rpartition(".")
            p = params[name]
            opt.state[p][field] = val.to(p.device) if field != "step" else val
    gen.set_state(st["rng"].to(torch.uint8))
    return int(meta["step"])
