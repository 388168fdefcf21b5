"""radllama.generate"""
