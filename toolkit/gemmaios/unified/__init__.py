"""The 12B's multimodal model at toy size: its generated sounds (`tones`) and its training (`tinymodel`)."""
