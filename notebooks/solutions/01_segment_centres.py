# Solution to notebook 01's exercise: the frames segment sampling takes at test time.


def segment_centres(n: int, T: int) -> list[int]:
    """The centre frame of each of T equal segments of a video of n frames."""
    return [int((i + 0.5) * n / T) for i in range(T)]
