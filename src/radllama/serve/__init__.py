"""radllama.serve"""
