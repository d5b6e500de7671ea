# Solution to notebook 08's exercise: how much of a temporal attention matrix moves information between frames.


def off_diagonal_share(matrix):
    """Mean share of each query frame's attention that goes to other frames, for a (T, T) matrix whose rows sum to 1."""
    T = matrix.shape[0]
    return float(1 - matrix.diagonal().sum() / T)
