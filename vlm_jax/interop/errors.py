"""The two ways a checkpoint conversion refuses: the checkpoint does not fit (import), the model has no HF form
(export)."""


class CheckpointError(ValueError):
    """A checkpoint does not match the model: missing, unexpected or mis-shaped tensors."""


class NotExportable(ValueError):
    """The model has parts or settings with no transformers equivalent."""
