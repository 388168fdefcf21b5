"""radllama.review"""
