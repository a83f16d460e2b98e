"""What produced a vector: the setup an index records, and the options a user asks for.

No torch here: opening an index and comparing setups must stay cheap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

DEFAULT_MODEL = "resnet50.tv_in1k"
POOLS = ("avg", "gem", "max", "flatten", "token")
CROPS = ("none", "center")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Preprocess:
    """How a decoded RGB image becomes the model's input.

    Attributes:
        size: model input (height, width) in pixels.
        mode: ``"resize"`` (whole image squashed to ``size``, as the seed's
            ``load_img(target_size=...)``) or ``"center"`` (the model's eval transform:
            shorter side to ``size / crop_pct``, then a centre crop).
        crop_pct: used by ``"center"`` only.
        interpolation: PIL filter name: ``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"lanczos"``.
        mean: per-channel mean on the 0..1 scale.
        std: per-channel std on the 0..1 scale.
    """

    size: tuple[int, int] = (224, 224)
    mode: str = "resize"
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        # JSON round trips give lists; keep the frozen value hashable and comparable.
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))


@dataclass(frozen=True)
class ClipSetup:
    """What else makes the vectors of a CLIP index: the text side and where the model came from.

    Attributes:
        library: ``"open_clip"``.
        version: the library's version when the index was built (informational: a newer
            open_clip computes the same vectors, so it is not compared).
        arch: the open_clip architecture, e.g. ``"ViT-B-32-256"``.
        tag: the pretrained tag, e.g. ``"datacomp_s34b_b86k"``; ``None`` with a local file.
        tokenizer: how text becomes tokens, e.g. ``"clip-bpe:49408:lower:77"``.
        text: ``"sha256:<hex>"`` of the text tower's configuration (with the weights
            fingerprint, it identifies the text tower).
    """

    library: str
    version: str
    arch: str
    tag: str | None
    tokenizer: str
    text: str


@dataclass(frozen=True)
class Setup:
    """Everything that determines a vector. An index holds vectors of exactly one Setup.

    Attributes:
        model: resolved timm name with its pretrained tag, e.g. ``"resnet50.tv_in1k"``.
        weights: fingerprint of the weights: ``"hub:<hf hub id>"`` or ``"sha256:<hex>"``
            of a local file.
        pool: ``avg``, ``gem``, ``max``, ``flatten`` or ``token`` (the model's own head pooling).
        preprocess: input size, resize mode, normalisation.
        dim: vector dimension.
        space: ``"image"`` (image-only vectors) or ``"clip"`` (text-aligned: text queries work).
        clip: the CLIP side of a ``"clip"`` setup, else ``None``.
    """

    model: str
    weights: str
    pool: str
    preprocess: Preprocess
    dim: int
    space: str = "image"
    clip: ClipSetup | None = None

    def to_json(self) -> str:
        d = asdict(self)
        if self.space == "image" and self.clip is None:
            # Image setups keep the JSON they always had: recorded setups and compiled-model
            # cache keys stay valid.
            del d["space"], d["clip"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Setup:
        d = json.loads(text)
        d["preprocess"] = Preprocess(**d["preprocess"])
        if d.get("clip") is not None:
            d["clip"] = ClipSetup(**d["clip"])
        return cls(**d)

    def differences(self, other: Setup) -> list[str]:
        """Human lines naming each field that differs, ``[]`` when compatible."""
        out = []
        for name in ("model", "weights", "pool", "dim", "space"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name}: index has {a!r}, requested {b!r}")
        if self.clip is not None and other.clip is not None:
            ca, cb = asdict(self.clip), asdict(other.clip)
            for name in ca:
                if name != "version" and ca[name] != cb[name]:
                    out.append(f"clip.{name}: index has {ca[name]!r}, requested {cb[name]!r}")
        pa, pb = asdict(self.preprocess), asdict(other.preprocess)
        for name in pa:
            if pa[name] != pb[name]:
                out.append(f"preprocess.{name}: index has {pa[name]!r}, requested {pb[name]!r}")
        return out


@dataclass(frozen=True)
class EmbedderOptions:
    """What the user asked for. ``None`` means "the index's recorded value, else the default".

    Attributes:
        model: any timm model name, with or without a pretrained tag.
        weights: path of a local ``.safetensors`` or ``.pth`` state dict; ``None`` uses
            timm's hub cache (downloading on first use when online).
        pool: one of :data:`POOLS`; ``None`` picks ``avg`` for CNN feature maps and
            ``token`` (the model's own pooling) for transformers.
        crop: ``"none"`` (resize the whole image) or ``"center"`` (the model's eval transform).
        precision: ``auto`` (bf16 where the device runs it natively, else fp32), ``bf16``, ``fp32``.
        device: ``auto`` (cuda, then mps, then cpu), or one of them.
        batch_size: images per forward pass; ``None`` picks one per device.
    """

    model: str | None = None
    weights: str | None = None
    pool: str | None = None
    crop: str | None = None
    precision: str = "auto"
    device: str = "auto"
    batch_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.pool is not None and self.pool not in POOLS:
            raise ConfigError(f"unknown pooling {self.pool!r}; choose one of {', '.join(POOLS)}")
        if self.crop is not None and self.crop not in CROPS:
            raise ConfigError(f"unknown crop {self.crop!r}; choose one of {', '.join(CROPS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("batch size must be at least 1")
