"""Golden noises: which initial noises are good across prompts."""
