"""PCDMs (Shen et al., ICLR 2024): stage-2 inpainting model code and pipeline; see PCDMS.md."""
