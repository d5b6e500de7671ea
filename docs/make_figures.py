"""Draw the README figure: what one query patch attends to under each attention scheme.

python docs/make_figures.py   # writes docs/attention_schemes.png
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from timesformer_lite.model import SCHEMES
from timesformer_lite.model.blocks import attended_patches

STEP_COLOURS = {  # one colour per kind of step
    "time": (0.95, 0.55, 0.15),
    "space": (0.25, 0.65, 0.35),
    "joint": (0.55, 0.35, 0.75),
    "width": (0.25, 0.65, 0.35),
    "height": (0.2, 0.5, 0.85),
    "local": (0.95, 0.55, 0.15),
    "sparse": (0.2, 0.5, 0.85),
}
TITLES = {
    "space_only": "space only",
    "joint_space_time": "joint space-time",
    "divided_space_time": "divided space-time",
    "sparse_local_global": "sparse local-global",
    "axial": "axial",
}


def draw(path: Path, T: int = 3, h: int = 6, w: int = 6, query=(1, 2, 3)) -> None:
    schemes = ["space_only", "joint_space_time", "divided_space_time", "sparse_local_global", "axial"]
    fig, axes = plt.subplots(T, len(schemes), figsize=(2.3 * len(schemes), 2.3 * T + 0.6))
    for col, scheme in enumerate(schemes):
        steps = attended_patches(scheme, T, h, w, query)
        for t in range(T):
            img = np.ones((h, w, 3)) * 0.93
            for name, mask in steps.items():  # later steps drawn over earlier ones, blended
                m = mask[t].numpy()
                img[m] = 0.45 * img[m] + 0.55 * np.array(STEP_COLOURS[name])
            if t == query[0]:
                img[query[1], query[2]] = (0.1, 0.1, 0.5)
            ax = axes[t, col]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
            ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
            ax.grid(which="minor", color="white", linewidth=1)
            ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
            if col == 0:
                ax.set_ylabel(f"frame t{t - query[0]:+d}" if t != query[0] else "frame t")
        steps_text = " -> ".join(s.grouping for s in SCHEMES[scheme])
        axes[0, col].set_title(f"{TITLES[scheme]}\n({steps_text})", fontsize=10)
    fig.suptitle("What the dark-blue query patch attends to (colour = attention step)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    draw(Path(__file__).with_name("attention_schemes.png"))
