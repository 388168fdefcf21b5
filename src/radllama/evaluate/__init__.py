"""radllama.evaluate"""
