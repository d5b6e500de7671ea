"""TimeSformer (Bertasius, Wang, Torresani, ICML 2021): a ViT whose blocks attend over space and time.

    video (B, T, 3, H, W) -> patches (B, T, N, D) + position (per frame) + time (per patch)
      -> blocks (see blocks.py) -> LayerNorm(class token) -> Linear head -> logits (B, classes)

The computation is the official one (facebookresearch/TimeSformer `vit.py`), which Hugging Face and
PaddleVideo port: parity with both is tested, and the dropout sits where the official code has it (tested
against its arrangement). Parameter names are the official ones.

Built in notebooks/05_the_divided_block_and_the_model.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig, model_config
from .blocks import Block


@dataclass
class AttentionMaps:
    """Attention probabilities of every layer, returned by `model(video, return_attention=True)`.

    Each field is a list with one tensor per layer (empty when the scheme has no such step). Token index
    0 is the class token wherever it takes part; patches are row-major over the (h, w) grid.

    - space:  (B, T, heads, 1+N, 1+N)   a frame, class token first (divided, space_only)
    - time:   (B, N, heads, T, T)       a patch position across frames (divided, axial)
    - joint:  (B, heads, 1+T*N, 1+T*N)  the whole clip, tokens ordered (t, n) (joint_space_time)
    - width:  (B, T, h, heads, w, w)    a row of patches (axial)
    - height: (B, T, w, heads, 1+h, 1+h) a column of patches (axial)
    - local:  (B, hp, wp, heads, L, L)  a T x h/hp x w/wp window, tokens ordered (t, i, j) (sparse_local_global)
    - sparse: (B, st, sh, sw, heads, 1+L, 1+L) every second token along t, h, w from offset (st, sh, sw)
    """

    space: list[Tensor] = field(default_factory=list)
    time: list[Tensor] = field(default_factory=list)
    joint: list[Tensor] = field(default_factory=list)
    width: list[Tensor] = field(default_factory=list)
    height: list[Tensor] = field(default_factory=list)
    local: list[Tensor] = field(default_factory=list)
    sparse: list[Tensor] = field(default_factory=list)
    grid: tuple[int, int, int] = (0, 0, 0)  # (T, h, w) of the clip the maps were computed on

    def __len__(self) -> int:
        return max(len(v) for v in (self.space, self.time, self.joint, self.height, self.sparse))


def resize_pos_embed(pos: Tensor, h: int, w: int) -> Tensor:
    """(1, 1+g*g, D) -> (1, 1+h*w, D): 2-D nearest over the patch grid, the class token's position kept.

    What the official and Hugging Face code do at run time for another image size; the weight loaders
    resize stored embeddings with this same function, so both give the same numbers."""
    g = math.isqrt(pos.shape[1] - 1)
    if (h, w) == (g, g):
        return pos
    patches = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)  # (1, D, g, g)
    patches = F.interpolate(patches, size=(h, w), mode="nearest")
    return torch.cat([pos[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)


def resize_time_embed(time: Tensor, T: int) -> Tensor:
    """(1, T0, D) -> (1, T, D): nearest over frames, as the official and Hugging Face code do."""
    if time.shape[1] == T:
        return time
    return F.interpolate(time.transpose(1, 2), size=T, mode="nearest").transpose(1, 2)


class PatchEmbed(nn.Module):
    """Cut every frame into p x p patches and project each to D channels (a strided Conv2d, `proj`)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, video: Tensor) -> Tensor:
        """(B, T, C, H, W) -> (B, T, h, w, D); pixels beyond the last whole patch are dropped."""
        x = self.proj(video.flatten(0, 1))  # (B*T, D, h, w): every frame on its own
        # token-major, or every later op reads the tokens strided (no copy when `proj` writes channels-last)
        return rearrange(x, "(b t) d h w -> b t h w d", t=video.shape[1]).contiguous()


class TimeSformer(nn.Module):
    """TimeSformer video classifier.

    Args:
        cfg: a `ModelConfig` (or a dict / keyword arguments of its fields). Its training-speed options (the
            same numbers, train/options.py) are built here, once; "auto" builds the reference's choice.

    Call it on a normalised clip `(B, T, 3, H, W)`; any T and any H, W >= patch size work (position
    embeddings are interpolated over the patch grid, time embeddings over time, both `nearest` like the
    official and Hugging Face code, so a checkpoint evaluated at another size gives their numbers).
    """

    def __init__(self, cfg: ModelConfig | dict | None = None, **kwargs) -> None:
        super().__init__()
        cfg = model_config(cfg, **kwargs) if kwargs or not isinstance(cfg, ModelConfig) else cfg
        self.cfg = cfg
        D = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.grid**2, D))
        # space_only has no notion of time (its frames are independent) unless an ablation asks for one
        with_time = cfg.attention_type != "space_only" if cfg.time_embed is None else cfg.time_embed
        self.time_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, D)) if with_time else None
        self.pos_drop = nn.Dropout(cfg.drop_rate)  # after the position embedding, as in the official code
        self.time_drop = nn.Dropout(cfg.drop_rate) if with_time else None  # and again after the time embedding
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # linear, 0 first
        common = dict(mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, attention_type=cfg.attention_type)
        common.update(drop=cfg.drop_rate, attn_drop=cfg.attn_drop_rate, eps=cfg.layer_norm_eps)
        common.update({k: cfg.option(k) for k in ("fused_attn", "short_row_softmax", "recompute_gelu")})
        last = cfg.option("class_token_only")  # the last block computes the class token alone
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, drop_path=rate, class_token_only=last and i == cfg.depth - 1, **common)
            for i, rate in enumerate(rates)
        )
        self.norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(D, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.grad_checkpointing = False
        # set by `load_pretrained`: class names, the run's full Config, and what happened to every key
        self.classes: list[str] | None = None
        self.run_config = None
        self.load_report = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference initialisation: truncated normal (std `init_std`) for Linear weights, pos_embed and
        cls_token; zero biases; unit LayerNorms; zero time embedding; zero `*_fc` in every block. The patch
        projection keeps PyTorch's default Conv2d init, as in the official code."""
        std = self.cfg.init_std
        nn.init.trunc_normal_(self.pos_embed, std=std, a=-2.0, b=2.0)
        nn.init.trunc_normal_(self.cls_token, std=std, a=-2.0, b=2.0)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.time_embed is not None:
            nn.init.zeros_(self.time_embed)
        for blk in self.blocks:
            blk.zero_added_steps()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations (long clips, small GPUs)."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameters recipes usually exclude from weight decay."""
        return {"pos_embed", "cls_token", "time_embed"}

    def pos_embed_for(self, h: int, w: int) -> Tensor:
        """Position embedding (1+h*w, D) for an h x w grid: nearest interpolation of the stored one."""
        return resize_pos_embed(self.pos_embed, h, w)[0]

    def time_embed_for(self, T: int) -> Tensor:
        """Time embedding (T, D): nearest interpolation of the stored one over frames."""
        return resize_time_embed(self.time_embed, T)[0]

    def embed(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, C, H, W) -> patch tokens x (B, T, N, D) with position and time added, class token (B, D).

        space_only: every frame is its own image with its own class token, x (B*T, 1, N, D) and cls (B*T, D).
        Dropout (`drop_rate`) as in the official code: on the class token and the patches after the position
        embedding, on the patches again after the time embedding.
        """
        x = self.patch_embed(video)  # (B, T, h, w, D)
        B, T, h, w, D = x.shape
        pos = self.pos_embed_for(h, w)  # (1+N, D)
        space_only = self.cfg.attention_type == "space_only"
        x = self.pos_drop(x.reshape(B, T, h * w, D) + pos[1:])
        cls = self.pos_drop((self.cls_token[0, 0] + pos[0]).expand(B * T if space_only else B, D))
        if self.time_embed is not None:  # patch tokens only, never the class token
            x = self.time_drop(x + self.time_embed_for(T)[:, None, :])
        return (x.reshape(B * T, 1, h * w, D) if space_only else x), cls

    def forward_features(self, video: Tensor, return_attention: bool = False) -> tuple[Tensor, AttentionMaps | None]:
        """The final class-token features (B, D) after the last LayerNorm, and the maps if asked."""
        self._check(video)
        B, T, _, H, W = video.shape
        grid = (H // self.cfg.patch_size, W // self.cfg.patch_size)
        x, cls = self.embed(video)
        space_only = self.cfg.attention_type == "space_only"
        maps = AttentionMaps(grid=(T, *grid)) if return_attention else None
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x, cls, layer_maps = checkpoint(blk, x, cls, grid, return_attention, use_reentrant=False)
            else:
                x, cls, layer_maps = blk(x, cls, grid, return_attention)
            for name, probs in layer_maps.items():
                if space_only:  # (B*T, 1, heads, L, L) -> (B, T, heads, L, L)
                    probs = probs.reshape(B, T, *probs.shape[2:])
                getattr(maps, name).append(probs)
        if space_only:
            cls = cls.reshape(B, T, cls.shape[-1]).mean(dim=1)  # average the frames before the final norm
        return self.norm(cls), maps

    def _check(self, video: Tensor) -> None:
        """A clear error for a video the model cannot take."""
        if video.dim() != 5:
            raise ValueError(f"expected a video of shape (B, T, C, H, W), got {tuple(video.shape)}")
        B, T, C, H, W = video.shape
        if self.cfg.in_chans != C:
            raise ValueError(f"video has {C} channels at dim 2, the model expects {self.cfg.in_chans} (B, T, C, H, W)")
        p = self.cfg.patch_size
        if p > H or p > W:
            raise ValueError(f"frames of {H}x{W} px are smaller than one {p}x{p} patch")

    def forward(self, video: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, AttentionMaps]:
        """video (B, T, C, H, W), normalised -> logits (B, num_classes) [, AttentionMaps]."""
        feats, maps = self.forward_features(video, return_attention)
        logits = self.head(feats)
        return (logits, maps) if return_attention else logits
