# Solution to notebook 03's exercise: scaled dot-product attention in one line.


def attend(q, k, v):
    """softmax(q k^T / sqrt(d)) v for q, k, v of shape (..., L, d)."""
    return (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(dim=-1) @ v
