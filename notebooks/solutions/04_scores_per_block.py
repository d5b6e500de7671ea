# Solution to notebook 04's exercise: attention scores per head in one block.


def scores_per_block(scheme: str, T: int, h: int, w: int) -> int:
    """Query-key scores one head computes in one block, class token included where it takes part."""
    N = h * w
    if scheme == "divided_space_time":  # time: N sequences of T; space: T sequences of 1 + N
        return N * T**2 + T * (1 + N) ** 2
    if scheme == "joint_space_time":  # one sequence of the class token and every patch
        return (1 + T * N) ** 2
    raise ValueError(scheme)
