"""gemmaios: Gemma 4 from a Hugging Face checkpoint to a benchmarked Core AI app on iPhone."""

__version__ = "0.1.0"
