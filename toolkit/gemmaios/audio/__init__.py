"""Audio input for Gemma 4 E2B/E4B (issue 28).

Modules: `clips` (the project's own test clips: tones, a chirp, silence, seeded noise, speech
synthesised by espeak-ng; 16-bit WAV read/write). The log-mel front end's facts are in
`gemmaios.contract` (AUDIO_*); the app's copy of HF's feature extractor is GemmaiosCore's
LogMel.swift, checked against HF by tests/test_swift_audio.py.
"""
