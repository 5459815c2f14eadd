"""recon3d's Gradio web app (`recon3d ui`), installed as the package ``recon3d_ui``."""
