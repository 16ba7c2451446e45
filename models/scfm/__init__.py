"""SCFM-guided DDPM (Xue et al., TCSVT 2024) in pure PyTorch: ops, model, loader, sampler, training."""
