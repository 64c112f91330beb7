"""F1: the training pipeline of a latent diffusion model (paper Figure 1), drawn with matplotlib.

The boxes name the components this toolkit actually assembles (``empirical.model``): the caption goes through the
frozen text encoder to token states, which are the keys and values of the UNet's cross-attention; the image goes
through the VAE encoder to a latent, is noised, and the UNet (queries from the noisy latent) predicts the noise.
Poison enters as pairs whose caption and image disagree — exactly the supervision the cross-attention learns from.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.built import Built
from paper_figures.sources import Sources
from implosion_base.plotting import FULL, POISONED, pyplot, save

BOXES = {  # key: (x, y, width, text, colour)
    "caption": (0.00, 0.70, 0.20, 'caption\n"a photo of a bird"', "#fdebd0"),
    "text": (0.26, 0.70, 0.20, "text encoder\n(frozen: MiniLM / CLIP)", "#d6eaf8"),
    "tokens": (0.52, 0.70, 0.18, "token states\n(keys and values)", "#d6eaf8"),
    "image": (0.00, 0.14, 0.20, "image of the\nsame concept", "#fdebd0"),
    "vae": (0.26, 0.14, 0.20, "VAE encoder\nimage → latent z₀", "#d5f5e3"),
    "noise": (0.52, 0.14, 0.18, "z_t = z₀ + noise ε\n(DDPM step t)", "#d5f5e3"),
    "unet": (0.77, 0.42, 0.22, "UNet, cross-attention:\nqueries from z_t,\nkeys/values from text", "#fadbd8"),
    "loss": (1.05, 0.42, 0.12, "loss\n‖ε − ε̂‖²", "#eaecee"),
}
H = 0.20


def fig1(src: Sources, out: Path) -> Built:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(FULL, 2.5))
    ax.set_xlim(-0.01, 1.18)
    ax.set_ylim(0, 1)
    ax.axis("off")
    centre = {}
    for key, (x, y, w, text, colour) in BOXES.items():
        ax.add_patch(plt.matplotlib.patches.FancyBboxPatch((x, y), w, H, boxstyle="round,pad=0.01", fc=colour,
                                                           ec="#555555", lw=0.8))
        ax.text(x + w / 2, y + H / 2, text, ha="center", va="center", fontsize=6.3)
        centre[key] = (x, y, w)

    def arrow(a, b, label="", colour="#333333"):
        xa, ya, wa = centre[a]
        xb, yb, _ = centre[b]
        start = (xa + wa, ya + H / 2)
        end = (xb, yb + H / 2)
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color=colour, lw=1.0))
        if label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.04, label, ha="center", fontsize=6,
                    color=colour)

    arrow("caption", "text")
    arrow("text", "tokens")
    arrow("tokens", "unet")
    arrow("image", "vae")
    arrow("vae", "noise")
    arrow("noise", "unet")
    arrow("unet", "loss")
    ax.text(0.115, 0.52, "training pair\n(the supervision)", ha="left", va="center", fontsize=6.5, style="italic")
    ax.annotate("", xy=(0.10, 0.69), xytext=(0.10, 0.35), arrowprops=dict(arrowstyle="<->", color="#555555", lw=0.8))
    ax.text(0.0, 0.01, "poison: caption says A, image shows B (dirty-label) or looks like B to the encoder "
            "(Nightshade-style)", ha="left", fontsize=6.5, color=POISONED)
    files = save(fig, out, "fig1")
    caption = ("Training pipeline of a latent diffusion model (paper Figure 1), as assembled by empirical.model: the "
               "caption's token states from a frozen text encoder are the keys and values of the UNet's "
               "cross-attention, whose queries come from the noisy image latent; the model learns to predict the "
               "added noise. Each training pair tells the cross-attention which text goes with which image "
               "features — the supervision of the paper's graph-alignment model, and what a poison pair corrupts.")
    return Built(files, caption, ["drawn from the components of empirical.model"])
