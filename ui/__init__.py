"""recon3d's Gradio web app (`recon3d ui`)."""
