"""RDKit-backed chemistry: SMILES tokens, molecular properties and similarity, generation and optimisation."""
