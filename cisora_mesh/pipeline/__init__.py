"""The shared detection pipeline: normalisation, injection signatures, output DLP, scoring."""
