# Solution to notebook 07's exercise: averaging the views' probabilities (mmaction2's way).


def softmax_average(per_view):
    """(B, V, classes) per-view logits -> (B, classes): the mean of the views' softmax probabilities."""
    return per_view.softmax(dim=-1).mean(dim=1)
