"""Ready-made networks: torchvision-exact templates, the examples, the kernel lesson's kernels."""
