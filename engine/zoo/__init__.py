"""Ready-made networks: templates exact to torchvision, the bundled examples, the kernel lesson's kernels."""
