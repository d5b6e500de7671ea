"""Fitting a checkpoint to a model: explicit resizes, head replacement, key matching and the load report.

Nothing is dropped or guessed silently. Every key of the model and of the file gets a line in the
`LoadReport`; missing, unexpected and mis-shaped keys are errors unless the caller passes strict=False.
Resizing follows what the model does at run time (2-D nearest over the patch grid for `pos_embed`,
nearest over frames for `time_embed`), so a model loaded at another size gives the same logits as the
original model run on inputs of that size.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..model.timesformer import TimeSformer, resize_pos_embed, resize_time_embed
from .checkpoint import Checkpoint
from .infer import attention_type_of, infer_model_fields
from .io import WeightsError
from .vit import inflate

log = logging.getLogger("timesformer_lite.weights")

# fields that decide parameter shapes or names: the ones worth suggesting when keys do not fit
_SHAPE_FIELDS = ("attention_type", "embed_dim", "depth", "patch_size", "in_chans", "mlp_ratio", "qkv_bias")


@dataclass
class LoadReport:
    """What happened to every key when a checkpoint was loaded (attached to the model as `load_report`).

    Args:
        what: the file and its format, e.g. "'k400.pyth' (official)".
        keys: every model key and every file key -> what was done ("loaded", "resized ...", "missing", ...).
        missing: model keys the file lacks (left at initialisation when not strict).
        unexpected: file keys the model has no place for (ignored when not strict).
        mismatched: "key: file (shape) vs model (shape)" for same-named tensors of different shapes.
        notes: the deliberate changes (resizes, new head, inflation), one line each.
        assumed: config fields the file does not record and the caller did not pass (logged as warnings).
        new_head: the file's classifier was not used (another class count, or an ImageNet head not kept).
    """

    what: str
    keys: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)
    new_head: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        loaded = sum(1 for s in self.keys.values() if not s.startswith(("missing", "unexpected", "shape", "dropped")))
        problems = [f"{len(v)} {name}" for name, v in self._problems() if v]
        return f"{self.what}: {loaded} tensors set" + (f"; {', '.join(problems)}" if problems else "")

    def _problems(self) -> list[tuple[str, list[str]]]:
        return [("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch", self.mismatched)]

    def __str__(self) -> str:
        width = max(map(len, self.keys), default=0)
        lines = [self.summary(), *(f"  note: {n}" for n in self.notes + self.assumed)]
        lines += [f"  {k:<{width}}  {s}" for k, s in self.keys.items()]
        return "\n".join(lines)


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _adapt(ckpt: Checkpoint, target: ModelConfig, keep_vit_head: bool, report: LoadReport) -> dict[str, Tensor]:
    """The checkpoint's tensors changed as the target config explicitly asks (inflate, resize, new head)."""
    state = dict(ckpt.state_dict)
    source = ckpt.config.model
    # an image ViT is inflated when the target adds a time axis; as a space_only model it is used as it is
    inflating = ckpt.image and target.attention_type != "space_only"
    if inflating:
        state, inflated = inflate(state, target)
        report.keys.update(inflated)
        report.notes.append(
            f"inflated an image ViT into {target.attention_type} attention with {target.num_frames} frames"
        )
    elif ckpt.image:
        report.notes.append("an image ViT used as a space_only model (no time axis to add); its head is kept")
    # a trained classifier is dropped only when the caller asks: another class count, or an ImageNet head
    # of a ViT being inflated into a video model (unless keep_vit_head)
    drop_head = target.num_classes != source.num_classes or (inflating and not keep_vit_head)
    if drop_head and any(k.startswith("head.") for k in state):
        why = (
            "ImageNet head not kept"
            if ckpt.image
            else f"head replaced: num_classes {source.num_classes} -> {target.num_classes}"
        )
        report.new_head = True
        for k in [k for k in state if k.startswith("head.")]:
            report.keys[k] = f"dropped ({why})"
            del state[k]
        if target.num_classes:
            report.notes.append(f"new head for {target.num_classes} classes ({why})")
            report.keys.update({k: "new (initialised)" for k in ("head.weight", "head.bias")})
    if target.img_size != source.img_size and "pos_embed" in state and target.patch_size == source.patch_size:
        old = state["pos_embed"]
        state["pos_embed"] = resize_pos_embed(old, target.grid, target.grid)
        report.keys["pos_embed"] = f"resized {_shape(old)} -> {_shape(state['pos_embed'])} (2-D nearest)"
        report.notes.append(f"pos_embed resized for img_size {source.img_size} -> {target.img_size}")
    if target.num_frames != source.num_frames and "time_embed" in state and not ckpt.image:
        old = state["time_embed"]
        state["time_embed"] = resize_time_embed(old, target.num_frames)
        report.keys["time_embed"] = f"resized {_shape(old)} -> {_shape(state['time_embed'])} (nearest)"
        report.notes.append(f"time_embed resized for num_frames {source.num_frames} -> {target.num_frames}")
    return state


def _hint(ckpt: Checkpoint, target: ModelConfig) -> str:
    """The config overrides under which the file's keys would fit, as far as shapes tell."""
    try:
        fields = infer_model_fields(ckpt.state_dict, "")
    except WeightsError:
        fields = {}
    if not ckpt.image:  # an image ViT fits every scheme
        fields["attention_type"] = attention_type_of(set(ckpt.state_dict))
    fixes = [f"{k}={fields[k]}" for k in _SHAPE_FIELDS if k in fields and fields[k] != getattr(target, k)]
    return f"pass {' '.join(fixes)} (the file's shapes), or " if fixes else "pass the matching config overrides, or "


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_fit(
    target: ModelConfig, ckpt: Checkpoint, what: str, strict: bool = True, keep_vit_head: bool = False
) -> None:
    """Raise the error `fit` would raise, without allocating the model or any tensor.

    The model and the checkpoint's tensors are taken on the meta device (shapes only), so a file whose
    recorded config asks for a huge model is refused before that model is built.
    """
    shapes = dataclasses.replace(ckpt, state_dict={k: v.to("meta") for k, v in ckpt.state_dict.items()})
    with torch.device("meta"):  # inflation and resizing make their new tensors on it too
        _plan(TimeSformer(target).state_dict(), target, shapes, what, strict, keep_vit_head)


def fit(model: nn.Module, ckpt: Checkpoint, what: str, strict: bool = True, keep_vit_head: bool = False) -> LoadReport:
    """Load `ckpt` into `model` (built from the target config), reporting every key.

    Args:
        model: a `TimeSformer` whose `cfg` is the checkpoint's config plus the caller's overrides.
        ckpt: the weights in our names.
        what: names the file and format in messages.
        strict: raise on missing, unexpected or mis-shaped keys (the default); False loads what fits.
        keep_vit_head: for an image ViT, keep its classifier (its class count must match).

    Raises:
        WeightsError: when not strict-clean, naming the keys and the fix.
    """
    own = model.state_dict()
    report, fitting = _plan(own, model.cfg, ckpt, what, strict, keep_vit_head)
    with torch.no_grad():
        for k, v in fitting.items():
            own[k].copy_(v)
    log.info(report.summary())
    for note in report.notes:
        log.info("  %s", note)
    for note in report.assumed:
        log.warning("%s: %s", what, note)
    for k, status in report.keys.items():
        log.debug("  %s: %s", k, status)
    return report


def _plan(
    own: dict[str, Tensor], target: ModelConfig, ckpt: Checkpoint, what: str, strict: bool, keep_vit_head: bool
) -> tuple[LoadReport, dict[str, Tensor]]:
    """The report of every key and the tensors to copy into a model whose state dict is `own`."""
    report = LoadReport(what, notes=list(ckpt.notes))
    state = _adapt(ckpt, target, keep_vit_head, report)
    fitting = {}
    for k, v in own.items():
        if k not in state:
            if k not in report.keys:
                report.missing.append(k)
                report.keys[k] = "missing (left at initialisation)"
        elif state[k].shape != v.shape:
            report.mismatched.append(f"{k}: file {_shape(state[k])} vs model {_shape(v)}")
            report.keys[k] = f"shape mismatch: file {_shape(state[k])} vs model {_shape(v)}"
        else:
            fitting[k] = state[k]
            report.keys.setdefault(k, "loaded")
    for k in state:
        if k not in own:
            report.unexpected.append(k)
            report.keys[k] = "unexpected (ignored)"
    report.assumed = [
        f"{name}={getattr(target, name)!r} assumed: {ckpt.source} weights do not record it (pass {name}=... to change)"
        for name in ckpt.guessed
    ]
    if strict and not report.ok:
        problems = "; ".join(f"{name}: {_listing(keys)}" for name, keys in report._problems() if keys)
        raise WeightsError(
            f"{what} does not fit the model ({target.attention_type}, embed_dim={target.embed_dim}, "
            f"depth={target.depth}): {problems}. Fix: {_hint(ckpt, target)}"
            "strict=False to load the keys that fit and keep the rest at initialisation"
        )
    return report, fitting
