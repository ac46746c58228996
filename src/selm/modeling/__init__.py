"""Building and loading models and tokenizers."""
