"""Training of small VGGT models on procedurally generated scenes (recon3d.synth)."""
