"""Video data: decoding (decord, PyAV fallback), frame sampling, tensor transforms, datasets, loaders, toy motions.

from timesformer_lite.data import build_dataset, build_loader
ds = build_dataset(cfg, "train")             # item: {"video": (T, C, H, W), "label", "index"} or None
loader = build_loader(ds, 8, shuffle=True, num_workers=2, seed=0)
frames = read_frames("clip.mp4", [0, 8, 16])  # uint8 (T, H, W, C)
views = load_views("clip.mp4", cfg)           # one file's test views: .video (V, T, C, H, W), .frames
"""

from .annotations import (
    AnnotationError,
    hmdb51_split,
    kinetics_split,
    read_classes,
    read_csv_list,
    read_list,
    scan_folder,
    ucf101_split,
    write_classes,
    write_list,
)
from .clip import Views, load_views
from .datasets import DATASETS, DECODED, DecodedVideos, VideoDataset, build_dataset
from .decode import VideoInfo, VideoReadError, num_frames, read_frames, video_info
from .loader import build_loader, collate_videos, workers_for
from .sampling import dense_indices, linspace_indices, sample_indices, segment_indices
from .toy import CLASSES as TOY_CLASSES
from .toy import ensure_toy_data, ensure_toy_data_for, make_clip
from .toy import generate as generate_toy_data
from .transforms import (
    ClipTransform,
    center_crop,
    hflip,
    normalize,
    random_crop,
    resize_short_side,
    to_float,
    uniform_crops,
)

__all__ = [
    "DATASETS",
    "DECODED",
    "TOY_CLASSES",
    "AnnotationError",
    "ClipTransform",
    "DecodedVideos",
    "VideoDataset",
    "VideoInfo",
    "VideoReadError",
    "Views",
    "build_dataset",
    "build_loader",
    "workers_for",
    "center_crop",
    "collate_videos",
    "dense_indices",
    "ensure_toy_data",
    "ensure_toy_data_for",
    "generate_toy_data",
    "hflip",
    "hmdb51_split",
    "kinetics_split",
    "linspace_indices",
    "load_views",
    "make_clip",
    "normalize",
    "num_frames",
    "random_crop",
    "read_classes",
    "read_csv_list",
    "read_frames",
    "read_list",
    "resize_short_side",
    "sample_indices",
    "scan_folder",
    "segment_indices",
    "to_float",
    "ucf101_split",
    "uniform_crops",
    "video_info",
    "write_classes",
    "write_list",
]
