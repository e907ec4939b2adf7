"""The CLIP stream: the frozen image encoder's embeddings, zero-shot scoring, the prompt sets."""
