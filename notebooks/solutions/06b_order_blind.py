# Solution to notebook 06b's exercise: which models cannot see the order of the frames.


def order_blind(attention_type: str, time_embed: bool) -> bool:
    """True when reversing a clip cannot change the model's logits.

    Attention without position information is permutation-equivariant (notebook 03), and the class token is an
    average over frames, so without a time embedding the order of the frames reaches nothing: not space-only
    (frames apart), and not divided attention either, whose temporal attention has no way to tell the frames
    apart. A time embedding gives every frame its own vector, and then every scheme can see order.
    """
    return not time_embed
