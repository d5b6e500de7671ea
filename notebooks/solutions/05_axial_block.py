# Solution to notebook 05's exercise: the axial block by hand (time, then width, then height).
import torch
from einops import rearrange


def axial_block(blk, x, cls, h, w):
    """x (B, T, N, D), cls (B, D) -> the same, by an axial block: time, a row (width), a column (height)."""
    B, T, N, D = x.shape
    # 1. time, as in the divided block: no class token, then temporal_fc
    out, _ = blk.temporal_attn(blk.temporal_norm1(rearrange(x, "b t n d -> (b n) t d")))
    x = x + rearrange(blk.temporal_fc(out), "(b n) t d -> b t n d", b=B)
    # 2. width: every row of every frame, no class token, then width_fc
    out, _ = blk.width_attn(blk.width_norm1(rearrange(x, "b t (h w) d -> (b t h) w d", h=h)))
    x = x + rearrange(blk.width_fc(out), "(b t h) w d -> b t (h w) d", b=B, t=T)
    # 3. height: every column, the image ViT's attention, a copy of the class token in front of each column
    xh = rearrange(x, "b t (h w) d -> (b t w) h d", h=h)
    copies = cls.repeat_interleave(T * w, dim=0)[:, None]  # (B*T*w, 1, D)
    out, _ = blk.attn(blk.norm1(torch.cat([copies, xh], dim=1)))
    cls = cls + out[:, 0].reshape(B, T * w, D).mean(dim=1)  # the T*w copies, averaged back
    x = x + rearrange(out[:, 1:], "(b t w) h d -> b t (h w) d", b=B, t=T)
    # 4. MLP on every token
    return x + blk.mlp(blk.norm2(x)), cls + blk.mlp(blk.norm2(cls))
