"""vlmq: VLM Q-Learning (advantage-filtered SFT) for vision-language agents."""

__version__ = "0.1.0"
