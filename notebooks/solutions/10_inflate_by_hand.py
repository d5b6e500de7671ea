# Solution to notebook 10's exercise: a ViT state dict (timm names) inflated into a divided TimeSformer's by hand.
import torch


def inflate_by_hand(vit_state: dict[str, torch.Tensor], num_frames: int) -> dict[str, torch.Tensor]:
    """The divided TimeSformer state dict a ViT state dict (timm names) inflates into."""
    out = dict(vit_state)
    D = vit_state["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in vit_state if k.startswith("blocks.")})
    for i in range(depth):
        for k in [k for k in vit_state if k.startswith((f"blocks.{i}.norm1.", f"blocks.{i}.attn."))]:
            out[k.replace(f"blocks.{i}.", f"blocks.{i}.temporal_", 1)] = vit_state[k].clone()
        out[f"blocks.{i}.temporal_fc.weight"] = torch.zeros(D, D)
        out[f"blocks.{i}.temporal_fc.bias"] = torch.zeros(D)
    out["time_embed"] = torch.zeros(1, num_frames, D)
    return out
