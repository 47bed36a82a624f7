"""What uses trained generators (above the recipes, beside infer): vae.py samples, encodes, decodes and optimises
molecules with a chemvae run. chem/ below keeps the chemistry primitives (tokens, RDKit properties)."""
