def synth():
    """Build a miniature FaceForensics++ tree."""
