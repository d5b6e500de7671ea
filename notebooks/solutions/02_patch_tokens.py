# Solution to notebook 02's exercise: how many patch tokens a clip becomes.


def patch_tokens(frames: int, img_size: int, patch: int) -> int:
    """Patch tokens of a clip of `frames` square frames of `img_size` px cut into `patch` px patches."""
    return frames * (img_size // patch) ** 2  # T x N; the class token comes on top
