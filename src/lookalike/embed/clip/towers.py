"""open_clip's two towers as plain torch modules: what lookalike traces, converts and runs.

:class:`ClipImageTower` gives the image tower timm's two-step interface, so the
compiled-model cache treats it as any timm model; :class:`ClipTextTower` runs the text
tower on token ids of any length.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ClipImageTower(nn.Module):
    """open_clip's visual tower and projection with timm's two-step interface.

    ``forward_features`` is ``encode_image`` (not normalised) and ``forward_head`` is the
    identity, so :class:`~lookalike.embed.pooling.PooledModel` with pooling ``token`` gives
    the projected vector, and the compiled-model cache converts and checks this module as
    it does any timm model.
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) normalised input -> (n, dim) image embeddings in the text space."""
        return self.visual(x)  # type: ignore[no-any-return]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """The identity: the projection is part of the visual tower."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class ClipTextTower(nn.Module):
    """open_clip's ``encode_text`` (not normalised) on token ids of any length up to 77.

    CLIP's text transformer is causal and reads its vector at the end-of-text token, so the
    padding after that token changes nothing: the tower runs on the tokens up to it only
    (``truncatable``), e.g. 5 of 77 for "a red bicycle", and gives the same vector
    (``tests/test_clip.py`` checks it against ``encode_text``). Text towers of another kind
    run on the full context through ``encode_text``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        text = getattr(model, "text", None)
        src: Any = text if text is not None else model
        self.pool_type = str(getattr(src, "text_pool_type", getattr(src, "pool_type", "")))
        self.eos_id = getattr(src, "text_eos_id", getattr(src, "eos_id", None))
        mask = getattr(src, "attn_mask", None)
        self.truncatable = (
            isinstance(mask, torch.Tensor)
            and self.pool_type in ("argmax", "eos")
            and getattr(src, "cls_emb", None) is None
            and not getattr(src, "use_pad_mask", False)
            and all(
                hasattr(src, a)
                for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")
            )
        )
        self._src = src

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, L) int64 token ids -> (n, dim) float32 text embeddings."""
        if not self.truncatable:
            return self.model.encode_text(tokens).float()  # type: ignore[operator]
        from open_clip.transformer import text_global_pool

        src = self._src
        length = tokens.shape[1]
        x = src.token_embedding(tokens) + src.positional_embedding[:length]
        x = src.transformer(x, attn_mask=src.attn_mask[:length, :length])
        x = src.ln_final(x)
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        proj = src.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x.float()  # type: ignore[no-any-return]
