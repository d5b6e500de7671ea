"""`timesformer-lite convert SRC DST`: any supported weights -> our checkpoint, or ours -> a Hugging Face folder.

timesformer-lite convert TimeSformer_k400.pdparams k400.safetensors
timesformer-lite convert jx_vit_base_p16_224.npz ucf101_init.safetensors num_classes=101
timesformer-lite convert k400.safetensors k400-hf/ --to hf
timesformer-lite convert TimeSformer_divST_8x32_224_K400.pyth k400.safetensors --classes kinetics400
"""

from __future__ import annotations

import argparse

from ..config import parse_override
from .checkpoint import save_model
from .hf import save_hf
from .load import SOURCES, load_pretrained


def _overrides(items: list[str]) -> dict:
    """`["num_classes=101", "model.num_frames=16"]` -> ModelConfig keyword overrides."""
    return {key.removeprefix("model."): value for key, value in map(parse_override, items)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="timesformer-lite convert",
        description="Convert TimeSformer / ViT weights between formats (the source format is detected).",
    )
    parser.add_argument("src", help="weights to read: a file or a Hugging Face folder")
    parser.add_argument("dst", help="a .safetensors path (--to ours) or a folder (--to hf)")
    parser.add_argument("--to", choices=("ours", "hf"), default="ours", help="output format (default: ours)")
    parser.add_argument("--source", choices=SOURCES, help="force the input format instead of detecting it")
    parser.add_argument(
        "--no-strict", action="store_true", help="load what fits; report missing/unexpected keys instead of failing"
    )
    parser.add_argument("--keep-vit-head", action="store_true", help="ImageNet ViT input: keep its classifier")
    parser.add_argument(
        "--classes",
        default=None,
        help="class names for a file without them: kinetics400, kinetics600, ssv2, or a text file (one per line)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="ModelConfig fields, e.g. num_heads=12 num_classes=101"
    )
    args = parser.parse_args(argv)
    model = load_pretrained(
        args.src,
        source=args.source,
        strict=not args.no_strict,
        keep_vit_head=args.keep_vit_head,
        classes=args.classes,
        **_overrides(args.overrides),
    )
    report = model.load_report
    for line in [report.summary(), *report.notes, *report.assumed]:
        print(line)
    out = save_model(args.dst, model) if args.to == "ours" else save_hf(args.dst, model)
    print(f"wrote {out} ({args.to})")
    return 0
