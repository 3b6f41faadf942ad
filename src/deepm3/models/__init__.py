"""Models: plain ``nn.Module`` networks in ``components`` and the one LightningModule that trains them."""
