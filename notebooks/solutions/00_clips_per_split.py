# Solution to notebook 00's exercise: how many clips the preset's toy-motions dataset has in each split.


def clips_per_split(per_class: int, classes: int = 10) -> dict[str, int]:
    """Clips in train, val and test for `per_class` training clips per class (data/toy.py's rule)."""
    held_out = max(per_class // 20, 2)  # val and test clips per class
    return {"train": classes * per_class, "val": classes * held_out, "test": classes * held_out}
