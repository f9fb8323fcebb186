"""The async ML detectors: a trained injection/poisoning classifier and embedding DLP.

Importing this package is cheap on purpose (numpy only): torch and the MiniLM weights load the first time a stage
runs, so `import cisora_mesh` and the inline path never pay for them.
"""
